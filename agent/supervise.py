"""Small building blocks of the daemon: supervised worker loops and crash-safe JSON files."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so a crash or power loss leaves either the old or the new file, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class SupervisedLoop:
    """Calls ``body`` every ``interval_s`` (or when woken) in its own thread; survives exceptions.

    More than ``max_failures`` consecutive failures stop the daemon (systemd restarts it).
    """

    def __init__(
        self,
        name: str,
        body: Callable[[], None],
        interval_s: float,
        on_fatal: Callable[[str], None],
        max_failures: int = 5,
    ) -> None:
        self.name, self.body, self.interval_s = name, body, interval_s
        self.on_fatal, self.max_failures = on_fatal, max_failures
        self.wake_event = threading.Event()
        self.stop_event = threading.Event()
        self.last_ok = math.nan  # monotonic time of the last successful run
        self.failures = 0
        self.runs = 0
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.body()
                self.failures = 0
                self.runs += 1
                self.last_ok = time.monotonic()
            except Exception as exc:  # supervised: count, log, go on; give up after max_failures
                self.failures += 1
                log.exception("%s loop failed (%d in a row): %s", self.name, self.failures, exc)
                if self.failures > self.max_failures:
                    self.on_fatal(f"{self.name} loop failed {self.failures} times in a row: {exc}")
                    return
            self.wake_event.wait(self.interval_s)
            self.wake_event.clear()

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        self.wake_event.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(10)
