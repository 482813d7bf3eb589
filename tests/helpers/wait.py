"""The one wait of the test suite: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(pred: Callable[[], T], timeout: float = 10.0, what: str = "", *, interval: float = 0.02) -> T:
    """Return ``pred()``'s first truthy value; fail the test (AssertionError naming ``what``) when it is
    still falsy after ``timeout`` seconds. Deadlines are generous: they bound a hang, they are not a
    timing assertion, so a loaded 2-core CI machine passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or _source(pred)}")
        time.sleep(interval)


def _source(pred: Callable[[], object]) -> str:
    """The line that states the condition (a lambda's source), else its name."""
    try:
        return inspect.getsource(pred).strip()
    except (OSError, TypeError):
        return getattr(pred, "__name__", "the condition")
