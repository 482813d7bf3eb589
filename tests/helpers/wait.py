"""The one wait of the test suite: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

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
            name = what or getattr(pred, "__name__", "the condition")
            raise AssertionError(f"timed out after {timeout:g} s waiting for {name}")
        time.sleep(interval)
