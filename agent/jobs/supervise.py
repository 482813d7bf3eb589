"""Small building blocks of the daemon: supervised worker loops (restarted within a budget) and
crash-safe JSON files."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESTART_WINDOW_S = 3600.0  # max_worker_restarts counts restarts within this window


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a crash or power loss leaves either the old or the new file, never half of one.

    On any failure (disk full, I/O error) the temporary file is removed and the error re-raised."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RestartBudget:
    """At most ``limit`` restarts within ``window_s`` (monotonic time); thread-safe."""

    def __init__(self, limit: int, window_s: float = RESTART_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self.total = 0
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Count one restart; False when the budget of the window is spent (nothing counted then)."""
        now = time.monotonic()
        with self._lock:
            while self._times and now - self._times[0] > self.window_s:
                self._times.popleft()
            if len(self._times) >= self.limit:
                return False
            self._times.append(now)
            self.total += 1
            return True


class SupervisedLoop:
    """Calls ``body`` every ``interval_s`` (or at once when woken) in its own thread; survives exceptions.

    More than ``max_failures`` consecutive failures end the worker: it is restarted in a fresh thread
    while ``budget`` allows (``daemon.max_worker_restarts`` per hour, counted in ``restarts``), else
    ``on_fatal`` stops the daemon (systemd restarts it). A wake-up that arrives while ``body`` runs is
    kept (a flag under a condition, cleared before the body runs): it makes the next run start at once.
    """

    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        interval_s: float,
        on_fatal: Callable[[str], None],
        max_failures: int = 5,
        budget: RestartBudget | None = None,
    ) -> None:
        self.name, self.body, self.interval_s = name, body, interval_s
        self.on_fatal, self.max_failures = on_fatal, max_failures
        self.budget = budget if budget is not None else RestartBudget(0)
        self._cond = threading.Condition()
        self._woken = False
        self._stopping = False
        self.last_ok = math.nan  # monotonic time of the last successful run
        self.failures = 0
        self.runs = 0
        self.restarts = 0
        self._begun = 0  # runs started (under _cond); with _ended, what run_once waits for
        self._ended = 0
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        with self._cond:
            if self._stopping:
                return
            self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self.thread.start()

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def run_once(self, timeout_s: float) -> bool:
        """Wake the loop and wait until a run that began after this call has ended (True), or
        ``timeout_s`` passed or the loop stopped (False). For drivers that step time themselves
        (`agent demo`): everything put in before the call is seen by that run."""
        with self._cond:
            need = self._begun + 1
            self._woken = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._ended >= need or self._stopping, timeout_s) and (
                self._ended >= need
            )

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self.thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _end_run(self) -> None:
        with self._cond:
            self._ended += 1
            self._cond.notify_all()

    def _wait(self) -> bool:
        """Until woken, the interval passed or stop; False on stop. Clears the wake-up it consumed."""
        with self._cond:
            self._cond.wait_for(lambda: self._woken or self._stopping, self.interval_s)
            self._woken = False
            return not self._stopping

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._woken = False  # this run serves every wake-up so far
                self._begun += 1
            try:
                self.body()
                self.failures = 0
                self.runs += 1
                self.last_ok = time.monotonic()
            except Exception as exc:  # supervised: count, log, go on; restart after max_failures
                self.failures += 1
                log.exception("%s loop failed (%d in a row): %s", self.name, self.failures, exc)
                if self.failures > self.max_failures:
                    self._end_run()
                    self._give_up(exc)
                    return
            self._end_run()
            if not self._wait():
                return

    def _give_up(self, exc: Exception) -> None:
        why = f"{self.name} loop failed {self.failures} times in a row: {exc}"
        with self._cond:
            stopping = self._stopping
        if stopping:
            return
        if self.budget.take():
            self.restarts += 1
            self.failures = 0
            log.error("%s; restarting the worker (restart %d)", why, self.restarts)
            self.start()  # a fresh thread; this one ends
            return
        self.on_fatal(f"{why}; worker restart budget ({self.budget.limit} per hour) spent")
