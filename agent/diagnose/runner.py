"""Run checks in parallel threads, each with its own timeout, under one overall deadline; never hangs.

A check that raises is a FAIL naming the exception; a check still running at its timeout is a FAIL
("did not finish within N s") and its thread is abandoned (daemon thread: it cannot keep the process
alive). Results come back in the order of the check table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from agent.diagnose.model import Check, Context, Result, Status, failed
from agent.errors import LewsError, UnknownCheckError

log = logging.getLogger(__name__)


def select(checks: Sequence[Check], only: Iterable[str] = (), skip: Iterable[str] = ()) -> list[Check]:
    """Checks whose name equals or starts with one of ``only`` (all when empty), minus ``skip``.

    A pattern that matches no check is an error listing the valid names: a typo must never turn into
    a run of zero checks that exits 0 (a false green)."""
    only_l = [o.strip() for o in only if o.strip()]
    skip_l = [s.strip() for s in skip if s.strip()]

    def matches(name: str, patterns: list[str]) -> bool:
        return any(name.startswith(p) for p in patterns)

    unknown = [p for p in [*only_l, *skip_l] if not any(c.name.startswith(p) for c in checks)]
    if unknown:
        names = ", ".join(c.name for c in checks)
        raise UnknownCheckError(
            f"no diagnose check is named (or starts with) {', '.join(repr(u) for u in unknown)}",
            fix=f"use one of: {names}",
        )

    out = [c for c in checks if not only_l or matches(c.name, only_l)]
    return [c for c in out if not matches(c.name, skip_l)]


class _Slot:
    def __init__(self, check: Check) -> None:
        self.check = check
        self.result: Result | None = None
        self.done = threading.Event()
        self.started = time.monotonic()


def _run_one(slot: _Slot, ctx: Context) -> None:
    check = slot.check
    t0 = time.monotonic()
    try:
        res = check.fn(ctx)
    except LewsError as exc:
        res = failed(check.name, exc.message, exc.fix or "see the message")
    except Exception as exc:  # a bug in a check must not stop the others: reported as FAIL
        log.exception("check %s raised", check.name)
        res = failed(check.name, f"check raised {type(exc).__name__}: {exc}", "report this diagnose bug")
    slot.result = Result(res.name, res.status, res.value, res.fix, res.detail, time.monotonic() - t0)
    slot.done.set()


def run_checks(checks: Sequence[Check], ctx: Context, *, timeout_s: float | None = None) -> list[Result]:
    """Start every check at once; wait for each until its own timeout or the overall ``timeout_s``."""
    slots = [_Slot(c) for c in checks]
    for slot in slots:
        threading.Thread(
            target=_run_one, args=(slot, ctx), name=f"diag-{slot.check.name}", daemon=True
        ).start()
    t_start = time.monotonic()
    overall = t_start + timeout_s if timeout_s is not None else float("inf")
    results: list[Result] = []
    for slot in slots:
        limit = min(slot.started + slot.check.timeout_s, overall)
        slot.done.wait(max(0.0, limit - time.monotonic()))
        if slot.result is not None:
            results.append(slot.result)
            continue
        allowed = min(slot.check.timeout_s, (timeout_s if timeout_s is not None else slot.check.timeout_s))
        results.append(
            Result(
                slot.check.name,
                Status.FAIL,
                f"did not finish within {allowed:g} s",
                "the thing it checks hangs (device, broker, disk); rerun with --only "
                f"{slot.check.name} and a larger --timeout to see more",
                {},
                time.monotonic() - slot.started,
            )
        )
    return results


def worst(results: Sequence[Result]) -> Status:
    return max((r.status for r in results), default=Status.PASS)
