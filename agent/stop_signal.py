"""SIGTERM/SIGINT for the long-running commands (`agent run`, `agent status-page`), handled without locks.

Python runs a signal handler in the main thread between two bytecodes, possibly while that thread holds
a lock: inside ``Event.wait`` (its condition's lock), a logging handler or a buffered write. A handler
that takes the same lock (``Event.set()``, ``log.info``) then waits for itself forever: the process
logs "stopping" and never stops, while its other threads go on (seen once in a full test run, see
docs/daemon.md). So the handler here only appends the signal's name to a list (atomic, no lock), and
the main thread polls for it, logs it and stops.

SIGUSR1 dumps every thread's Python stack to stderr (the journal) without stopping anything
(:mod:`faulthandler`): what a technician runs on a gateway whose daemon seems stuck.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the main thread looks for a received signal (the stop's worst added delay)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _no_other_reason(timeout_s: float) -> bool:
    time.sleep(timeout_s)
    return False


class StopSignals:
    """Records SIGTERM/SIGINT; :meth:`wait` returns once one arrived or ``stopped`` says so."""

    def __init__(self) -> None:
        self.received: list[str] = []

    def install(self) -> StopSignals:
        """Install the handlers (main thread only, before the threads start) and the SIGUSR1 dump."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.handle)
        faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=False)
        return self

    def handle(self, signum: int, _frame: object) -> None:
        # No lock, no logging, no I/O here: see the module docstring.
        self.received.append(signal.Signals(signum).name)

    def wait(self, stopped: Callable[[float], bool] = _no_other_reason, poll_s: float = POLL_S) -> str:
        """Block until a stop signal arrived (its name) or ``stopped(poll_s)`` is true (``""``).

        ``stopped`` waits at most its argument for another reason to stop (the daemon's fatal
        error); it may take locks, since the handler takes none."""
        while not self.received:
            if stopped(poll_s):
                return ""
        name = self.received[0]
        log.info("signal %s: stopping", name)
        return name
