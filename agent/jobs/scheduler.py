"""The daemon's one small scheduler: named loops of ordered job steps, and an ordered life cycle.

- :class:`Scheduler`: each loop is a :class:`~agent.jobs.supervise.SupervisedLoop` (one thread) that runs its
  steps in order every ``interval_s`` or at once when woken. A step is *critical* (its exception fails
  the run: counted, and after ``max_failures`` in a row the worker is restarted within the restart
  budget) or *optional* (its exception is counted per step and logged, and the loop goes on: an I/O
  error of an optional output such as the status file never stops the warning engine).
- :class:`Lifecycle`: components started in order; stopped in reverse order, every stop in its own
  ``try`` so one failing stop never leaves the others running, also after a start that failed half way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.jobs.supervise import RestartBudget, SupervisedLoop

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One job's part of a loop run."""

    name: str
    run: Callable[[], None]
    critical: bool = False


class Scheduler:
    """Named loops of steps; ``start()`` once, ``stop()`` once (idempotent)."""

    def __init__(self, on_fatal: Callable[[str], None], *, max_restarts: int, max_failures: int = 5) -> None:
        self.on_fatal = on_fatal
        self.max_failures = max_failures
        self.budget = RestartBudget(max_restarts)
        self.loops: dict[str, SupervisedLoop] = {}
        self.step_failures: Counter[str] = Counter()

    def every(self, name: str, interval_s: float, steps: Sequence[Step]) -> SupervisedLoop:
        """Add a loop running ``steps`` in order every ``interval_s`` (and when woken)."""
        ordered = list(steps)

        def body() -> None:
            for step in ordered:
                if step.critical:
                    step.run()
                    continue
                try:
                    step.run()
                except Exception as exc:  # optional output: count, log the first and every 100th
                    self.step_failures[step.name] += 1
                    n = self.step_failures[step.name]
                    if n == 1 or n % 100 == 0:
                        log.error("%s step %s failed (%d times): %s", name, step.name, n, exc)

        loop = SupervisedLoop(name, body, interval_s, self.on_fatal, self.max_failures, self.budget)
        self.loops[name] = loop
        return loop

    def wake(self, name: str) -> None:
        loop = self.loops.get(name)
        if loop is not None:
            loop.wake()

    def start(self) -> None:
        for loop in self.loops.values():
            loop.start()

    def stop(self) -> None:
        for loop in reversed(list(self.loops.values())):
            loop.stop()

    @property
    def restarts(self) -> int:
        return self.budget.total

    def stats(self) -> dict[str, dict[str, float | int | bool]]:
        return {
            n: {"runs": lp.runs, "failures": lp.failures, "restarts": lp.restarts, "alive": lp.alive}
            for n, lp in self.loops.items()
        }


class Lifecycle:
    """Ordered start, reverse-ordered stop of named components."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.stop_failures: list[str] = []

    def start(self, name: str, start: Callable[[], object], stop: Callable[[], None]) -> None:
        """Run ``start``; once it returned, ``stop`` runs at :meth:`stop_all`."""
        start()
        self._stops.append((name, stop))

    def owns(self, name: str, stop: Callable[[], None]) -> None:
        """A component that is already open (constructed): ``stop`` closes it at :meth:`stop_all`."""
        self._stops.append((name, stop))

    def stop_all(self) -> None:
        """Stop everything started so far, newest first; a failing stop is logged and the rest go on."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # every component gets its stop, whatever the one before did
                self.stop_failures.append(f"{name}: {exc}")
                log.exception("stopping %s failed: %s", name, exc)
