"""The watchdog job: pings systemd (``WATCHDOG=1``) only while the daemon makes real progress.

Progress, checked against ``daemon.watchdog_progress_s``: the evaluation loop completed a run within
that many seconds, and every pipeline thread (each serial port, the step aggregation, the store
writer) and every supervised loop is alive. A silent sensor is not a failure (it is reported as
"no data"), nor is a full disk (degraded mode); a stuck or dead worker is.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable

from agent.sdnotify import Notifier

log = logging.getLogger(__name__)


class WatchdogJob:
    name = "watchdog"

    def __init__(
        self,
        notifier: Notifier,
        progress_s: float,
        last_evaluation: Callable[[], float],
        threads_alive: Callable[[], dict[str, bool]],
    ) -> None:
        self.notifier, self.progress_s = notifier, progress_s
        self._last_evaluation, self._threads_alive = last_evaluation, threads_alive
        self.counters: Counter[str] = Counter()
        self.last_problem: str | None = None

    def problem(self) -> str | None:
        """Why the daemon is not progressing (None: it is)."""
        last = self._last_evaluation()
        if not math.isfinite(last) or time.monotonic() - last >= self.progress_s:
            return f"no evaluation completed for {self.progress_s:.0f} s"
        dead = sorted(name for name, alive in self._threads_alive().items() if not alive)
        return f"thread(s) not running: {', '.join(dead)}" if dead else None

    def run(self) -> None:
        problem = self.problem()
        self.last_problem = problem
        if problem is None:
            self.notifier.watchdog()
            self.counters["pings"] += 1
            return
        self.counters["withheld"] += 1
        log.error("watchdog withheld: %s", problem)
