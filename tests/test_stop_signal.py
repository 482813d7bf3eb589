"""The stop-signal handler of `agent run` / `agent status-page` takes no lock.

Python runs a handler in the main thread between bytecodes, possibly while that thread holds the lock
of the very Event it waits on. A handler that then takes that lock (the old ``Event.set()`` handler)
waits for itself: "stopping" logged, the process never stopped (seen once in a full test run). Here
the signal is raised *inside* a held lock, as that race does, and SIGALRM breaks a deadlock into a
failure instead of a hung test run.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from agent.stop_signal import StopSignals


class Deadlocked(Exception):
    pass


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}

    def _alarm(_signum: int, _frame: FrameType | None) -> None:
        raise Deadlocked("the stop handler blocked on a lock its own thread holds")

    signal.signal(signal.SIGALRM, _alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.unregister(signal.SIGUSR1)  # install() registered the stack dump
        for signum, handler in saved.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_inside_the_waited_on_lock_stops_the_wait(restored_handlers: None, signum: int) -> None:
    stop = threading.Event()  # what the daemon's wait() waits on
    signals = StopSignals().install()
    calls: list[float] = []
    held: threading.Condition = stop._cond  # type: ignore[attr-defined]  # the lock Event.wait holds

    def stopped(timeout_s: float) -> bool:
        calls.append(timeout_s)
        with held:  # as Event.wait holds it between its bytecodes
            signal.raise_signal(signum)  # the handler runs here, inside the lock
        return stop.wait(timeout_s)

    signal.setitimer(signal.ITIMER_REAL, 5.0)
    assert signals.wait(stopped) == signal.Signals(signum).name
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert len(calls) == 1 and not stop.is_set()


def test_another_reason_to_stop_ends_the_wait_without_a_signal(restored_handlers: None) -> None:
    fatal = threading.Event()
    signals = StopSignals().install()
    threading.Timer(0.3, fatal.set).start()  # the daemon's fatal error, from one of its threads
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    assert signals.wait(fatal.wait, poll_s=0.05) == ""
    assert signals.received == []
