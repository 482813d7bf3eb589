"""Time you can trust: GNSS time disciplines the agent's notion of time.

A Jetson that boots without RTC battery or network starts with a system clock hours, days or years
off. The GNSS receiver, once it reports a valid UTC time (UBX NAV-PVT validDate+validTime, NAV-TIMEUTC
validUTC, NMEA RMC status A), knows better, within reason: a receiver time before 2025 (a GPS week
rollover) or more than a year from a plausible system clock is a receiver bug and ignored (counted).
:class:`ClockDiscipline` keeps the offset GNSS - system clock from the receive times of those
messages (median of the last observations, so serial latency and one odd message do not move it), and:

- ``is_wrong``: the offset is larger than ``wrong_above_s`` (5 s: serial latency is well under 1 s);
- ``correct(t_sys)`` / ``now()``: system time + the offset while the clock is wrong, else unchanged
  (a good clock is not nudged by latency jitter);
- ``status()``: what the daemon reports (``daemon status``, status.json ``clock``).

GNSS samples always carry the receiver's own time; with a wrong system clock the samples of other
ports (stamped at receipt) are stamped with the corrected time, so both agree. Until the receiver
has a valid time the system clock is all there is (``source: "system"``). The offset is kept when
the receiver goes quiet (a system clock drifts slowly); it is replaced when GNSS time returns.

Thread safety: one lock; the port threads observe, every thread reads.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

WRONG_ABOVE_S = 5.0
WINDOW = 9  # observations in the median
# A receiver time before this cannot be right (this software did not exist): a GPS week rollover
# (1024 weeks = 19.6 years back) reports valid flags with such a date. 2025-01-01T00:00:00Z.
MIN_PLAUSIBLE_UTC = 1_735_689_600.0
# Largest correction of a system clock that is itself plausible (after MIN_PLAUSIBLE_UTC): a year. A
# clock before it (1970 after a boot without RTC) is corrected by whatever GNSS says.
MAX_CORRECTION_S = 366 * 86400.0


class ClockDiscipline:
    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        *,
        enabled: bool = True,
        wrong_above_s: float = WRONG_ABOVE_S,
    ) -> None:
        """``wall``: the system clock; ``enabled`` False: observe and report, never correct (a
        simulated clock, where real latency is multiplied by the simulation speed)."""
        self.raw = wall
        self.enabled = enabled
        self.wrong_above_s = wrong_above_s
        self._lock = threading.Lock()
        self._offsets: deque[float] = deque(maxlen=WINDOW)
        self._offset: float | None = None
        self._last_fix_sys: float | None = None  # system time of the last GNSS time observation
        self.observations = 0
        self.implausible_fixes = 0
        self.corrections_changed = 0  # how often the applied correction changed (a step)
        self._applied = 0.0

    def observe(self, gnss_utc: float, t_sys: float) -> None:
        """The receiver reported valid UTC ``gnss_utc`` in bytes received at system time ``t_sys``."""
        if not (math.isfinite(gnss_utc) and math.isfinite(t_sys)):
            return
        if gnss_utc < MIN_PLAUSIBLE_UTC or (
            t_sys >= MIN_PLAUSIBLE_UTC and abs(gnss_utc - t_sys) > MAX_CORRECTION_S
        ):
            with self._lock:
                self.implausible_fixes += 1  # a receiver date bug, not a wrong system clock
            return
        with self._lock:
            self._offsets.append(gnss_utc - t_sys)
            self._offset = statistics.median(self._offsets)
            self._last_fix_sys = t_sys
            self.observations += 1
            applied = self._offset if (self.enabled and abs(self._offset) > self.wrong_above_s) else 0.0
            if abs(applied - self._applied) > self.wrong_above_s:
                self.corrections_changed += 1
            self._applied = applied

    @property
    def offset_s(self) -> float | None:
        """GNSS - system clock (s), None before the receiver reported a valid time."""
        with self._lock:
            return self._offset

    @property
    def is_wrong(self) -> bool:
        """The system clock is more than ``wrong_above_s`` off GNSS time."""
        off = self.offset_s
        return off is not None and abs(off) > self.wrong_above_s

    @property
    def correction_s(self) -> float:
        """What ``correct`` adds to a system time now (0 while the clock is right or unknown)."""
        with self._lock:
            return self._applied

    def correct(self, t_sys: float) -> float:
        return t_sys + self.correction_s

    def restamp(self, decoder: Any, t_sys: float) -> tuple[float, str]:
        """After a chunk received at ``t_sys`` was decoded: observe the receiver's valid time (a GNSS
        decoder's ``take_time_fix``), return the corrected stamp and which clock made the samples'
        times (gnss: the receiver; corrected: the system clock corrected; system: as it is)."""
        take = getattr(decoder, "take_time_fix", None)
        fix = take() if take is not None else None
        if fix is not None:
            self.observe(fix, t_sys)
        t = self.correct(t_sys)
        return t, "gnss" if take is not None else "corrected" if t != t_sys else "system"

    def now(self) -> float:
        """The agent's time: the system clock, corrected by GNSS when it is wrong."""
        return self.correct(self.raw())

    def status(self) -> dict[str, Any]:
        with self._lock:
            off, last, applied = self._offset, self._last_fix_sys, self._applied
        # not judged on a simulated clock (real latency times the simulation speed looks like an offset)
        wrong = (off is not None and abs(off) > self.wrong_above_s) if self.enabled else None
        age = None if last is None else max(0.0, self.raw() - last)
        return {
            "source": "gnss" if applied else "system",
            "system_clock_wrong": wrong,
            "offset_s": None if off is None else round(off, 3),
            "correction_s": round(applied, 3),
            "wrong_above_s": self.wrong_above_s,
            "gnss_time_age_s": None if age is None else round(age, 1),
            "observations": self.observations,
            "implausible_gnss_times": self.implausible_fixes,
            "corrections_changed": self.corrections_changed,
            "enabled": self.enabled,
        }


class SimClock:
    """Scenario time for replays, demos and tests: ``start_utc`` until :meth:`go`, then ``start_utc`` +
    speed x (real seconds since go).

    ``anchor_wall``: instead of :meth:`go`, the scenario starts at that wall-clock (epoch) second, so
    several processes (a daemon restarted after kill -9, simulators in another process) share one
    scenario time; before the anchor the clock reads ``start_utc``. It lives here, not with the demo,
    so that `agent run --clock-speed` does not import the demo's simulators (docs/performance.md).
    """

    def __init__(self, speed: float, start_utc: float, anchor_wall: float | None = None) -> None:
        self.speed, self.start_utc = speed, start_utc
        self.anchor_wall = anchor_wall
        self.t0: float | None = None

    def go(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        if self.anchor_wall is not None:
            return self.start_utc + max(0.0, time.time() - self.anchor_wall) * self.speed
        if self.t0 is None:
            return self.start_utc
        return self.start_utc + (time.monotonic() - self.t0) * self.speed
