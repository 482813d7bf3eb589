"""The demo in lockstep: scenario time moves on only when the daemon has taken in what came before.

A time-compressed demo paced by the wall clock depends on the machine: on a loaded one the daemon
reads the ptys late, evaluates late and sees partial days, and the levels come out in another order.
Here the demo owns the clock. It first waits until the daemon has opened both ports (pyserial's
``open()`` flushes the tty's input queue: a step written before that is lost, and the demo would wait
for it forever). Then each step of :data:`STEP_S` scenario seconds it

1. writes what the simulated devices send up to the step's end (GNSS epochs, bridge frames; the
   bridge's answers to the daemon's commands too) to their pseudo-terminals,
2. waits until the daemon's port threads have read and decoded every byte of it
   (``pipeline.done.<port>``),
3. every :data:`EVALUATE_EVERY` steps (6 h) and at the wire trip, runs one evaluation and waits for it.

The daemon, its ports, store, engine and outbox are the real ones; only the time source and the
evaluation trigger are the demo's. A faster or slower machine changes how long the demo takes, not
what it publishes. ``pace_s_per_day`` slows an idle machine down to a watchable pace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

from agent.demo.scenario import DAY, DemoScenario
from agent.errors import DemoStalled
from agent.sensors.gnss_sim import SimEpoch, simulate
from firmware_bridge.device_model import DeviceModel

STEP_S = 900.0  # the bridge's rain-frame period and the GNSS epoch period of the demo site
EVALUATE_EVERY = 24  # steps: one evaluation per 6 scenario hours (and at the wire trip)
DRAIN_TIMEOUT_S = 60.0  # real seconds the daemon may take to read one step (a stuck daemon fails the demo)


class StepClock:
    """Scenario time, set by the driver (callable: the daemon's clock)."""

    def __init__(self, t: float) -> None:
        self._t = t
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._t

    def set(self, t: float) -> None:
        with self._lock:
            self._t = t


class PtyEnd:
    """The device side of a pseudo-terminal: what is written, and the bytes the gateway sent back."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.written = 0

    def write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:  # the tty buffer is full until the daemon reads: wait for it
                if time.monotonic() > deadline:
                    raise DemoStalled(
                        f"the daemon stopped reading {self.path}", fix="see the daemon's log lines above"
                    ) from None
                time.sleep(0.001)
                continue
            self.written += n
            view = view[n:]

    def read(self) -> bytes:
        try:
            return os.read(self.master, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return b""
            raise

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class Lockstep:
    """The demo site's devices on ptys, advanced step by step with the daemon (see the module text)."""

    def __init__(self, scenario: DemoScenario, start_utc: float) -> None:
        self.scenario, self.start_utc = scenario, start_utc
        self.clock = StepClock(start_utc)
        self.gnss, self.bridge = PtyEnd(), PtyEnd()
        self.model = DeviceModel(scenario.bridge)
        self._epochs: Iterator[SimEpoch] = iter(simulate(scenario.gnss))
        self._next: SimEpoch | None = next(self._epochs, None)
        self.steps = 0
        self.evaluations = 0
        self.drain_s = 0.0  # real seconds spent waiting for the daemon to read, and to evaluate
        self.evaluate_s = 0.0

    @property
    def end_utc(self) -> float:
        return self.start_utc + self.scenario.days * DAY

    def _send(self, t: float, deadline: float) -> None:
        t_dev = t - self.start_utc
        answers = self.model.receive(self.bridge.read(), t_dev)  # commands the daemon sent (SET_CLOCK ...)
        for _, data in [*answers, *self.model.advance(t_dev)]:
            self.bridge.write(data, deadline)
        while self._next is not None and self._next.t <= t:
            self.gnss.write(self._next.data, deadline)
            self._next = next(self._epochs, None)

    def _drained(self, done: Callable[[], dict[str, Any]]) -> bool:
        stats = done()
        return (
            int(stats.get("done.gnss", 0)) >= self.gnss.written
            and int(stats.get("done.bridge", 0)) >= self.bridge.written
        )

    def run(
        self,
        done: Callable[[], dict[str, Any]],
        evaluate: Callable[[float], bool],
        *,
        ports_open: Callable[[], bool],
        stop: threading.Event,
        pace_s_per_day: float = 0.0,
        on_step: Callable[[float], None] | None = None,
    ) -> None:
        """Step through the whole scenario. ``done()``: the pipeline's stats; ``evaluate(timeout)``: one
        evaluation of the daemon, True when it ran; ``ports_open()``: the daemon holds both ports open."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while not ports_open():
            if time.monotonic() > deadline or stop.is_set():
                raise DemoStalled(
                    f"the daemon did not open the demo's ports {self.gnss.path} and {self.bridge.path}",
                    fix="see the daemon's log lines above",
                )
            time.sleep(0.005)
        t = self.start_utc
        wall0 = time.monotonic()
        wire_t = self.scenario.wire_trip_t
        while t < self.end_utc and not stop.is_set():
            t = min(t + STEP_S, self.end_utc)
            self.clock.set(t)
            t0 = time.monotonic()
            deadline = t0 + DRAIN_TIMEOUT_S
            self._send(t, deadline)
            while not self._drained(done):
                if time.monotonic() > deadline or stop.is_set():
                    raise DemoStalled(
                        f"the daemon did not read the demo's step at day {(t - self.start_utc) / DAY:.2f}",
                        fix="see the daemon's log lines above",
                    )
                time.sleep(0.0005)
            t1 = time.monotonic()
            self.drain_s += t1 - t0
            self.steps += 1
            crossed_wire = t - STEP_S < wire_t <= t
            if self.steps % EVALUATE_EVERY == 0 or crossed_wire or t >= self.end_utc:
                if not evaluate(DRAIN_TIMEOUT_S):
                    raise DemoStalled("the daemon did not evaluate in time", fix="see its log lines above")
                self.evaluations += 1
                self.evaluate_s += time.monotonic() - t1
            if on_step is not None:
                on_step(t)
            if pace_s_per_day > 0:  # an idle machine: slow down to the asked-for pace
                ahead = wall0 + (t - self.start_utc) / DAY * pace_s_per_day - time.monotonic()
                if ahead > 0:
                    stop.wait(ahead)

    def close(self) -> None:
        self.gnss.close()
        self.bridge.close()
