"""Simulator scenarios as plain data: what the site does over time (rain, ground motion, wire, reboots).

A scenario is a frozen dataclass; :func:`scenario_from_dict` builds one from JSON-like data so the demo
and tests can define scenarios in files. Times ``t_s`` are seconds since the scenario start.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from firmware_bridge.errors import ScenarioError
from firmware_bridge.messages import SampleFormat, WireState


@dataclass(frozen=True)
class RainStep:
    """From ``t_s`` on (until the next step) rain falls at ``mm_per_h``."""

    t_s: float
    mm_per_h: float


@dataclass(frozen=True)
class SeismicEvent:
    """Ground motion: a ``freq_hz`` sine under a half-sine envelope peaking at ``amplitude_counts``."""

    t_s: float
    duration_s: float
    amplitude_counts: float
    freq_hz: float = 8.0


@dataclass(frozen=True)
class WireChange:
    t_s: float
    state: WireState


@dataclass(frozen=True)
class Outage:
    """The link loses every frame sent in [t_s, t_s + duration_s); the device keeps running."""

    t_s: float
    duration_s: float


@dataclass(frozen=True)
class Garbage:
    """Line noise: ``nbytes`` random bytes injected at ``t_s``."""

    t_s: float
    nbytes: int


@dataclass(frozen=True)
class Scenario:
    duration_s: float = 600.0
    start_utc: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z; device time of t_s = 0
    seed: int = 0
    device_id: int = 0x4C45_5753_0000_0001
    firmware: tuple[int, int, int] = (1, 0, 0)
    mm_per_tip: float = 0.2
    rain: tuple[RainStep, ...] = ()
    rain_period_s: float = 60.0  # a RAIN frame at least this often ...
    rain_check_s: float = 1.0  # ... and within this long after a tip
    heartbeat_period_s: float = 10.0  # a HEARTBEAT (+ WIRE) this often
    seismic_rate_hz: int = 100  # 0: no geophone
    seismic_block: int = 50
    seismic_gain: int = 1
    seismic_format: SampleFormat = SampleFormat.INT32
    seismic_noise_counts: float = 20.0
    seismic_events: tuple[SeismicEvent, ...] = ()
    seismic_trace: tuple[
        int, ...
    ] = ()  # real counts at seismic_rate_hz from t_s = 0 replace the synthetic signal
    wire: tuple[WireChange, ...] = ()
    reboots: tuple[float, ...] = ()
    reboot_downtime_s: float = 2.0
    outages: tuple[Outage, ...] = ()
    garbage: tuple[Garbage, ...] = ()
    clock_set: bool = True  # device clock synced from boot; else device times are 0 until SET_CLOCK
    supply_mv: int = 12_400
    temp_c: float = 12.5
    self_test_failures: int = 0  # bitmap the device reports in the SELF_TEST ACK
    boot_ids: tuple[int, ...] = field(default=())  # fixed boot ids (else drawn from the seed)

    def __post_init__(self) -> None:
        def bad(msg: str, fix: str) -> ScenarioError:
            return ScenarioError(f"scenario: {msg}", fix=fix)

        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise bad(f"duration_s={self.duration_s}", "use a positive, finite duration")
        if self.mm_per_tip <= 0:
            raise bad(f"mm_per_tip={self.mm_per_tip}", "use the gauge calibration, e.g. 0.2")
        for name in ("rain", "seismic_events", "wire", "outages", "garbage"):
            times = [item.t_s for item in getattr(self, name)]
            if times != sorted(times) or any(t < 0 for t in times):
                raise bad(f"{name} times are not ascending and >= 0", f"sort the {name} entries by t_s")
        if any(step.mm_per_h < 0 for step in self.rain):
            raise bad("negative rain rate", "rain rates are mm/h >= 0")
        if list(self.reboots) != sorted(self.reboots):
            raise bad("reboots are not ascending", "sort the reboot times")
        if self.seismic_rate_hz < 0 or not (1 <= self.seismic_block <= 500):
            raise bad("seismic_rate_hz < 0 or seismic_block outside 1..500", "e.g. 100 Hz in blocks of 50")
        if min(self.rain_period_s, self.rain_check_s, self.heartbeat_period_s) <= 0:
            raise bad(
                "report periods must be > 0", "e.g. rain_period_s=60, rain_check_s=1, heartbeat_period_s=10"
            )
        if any(not (0 < b < 2**32) for b in self.boot_ids):
            raise bad("boot ids must be in 1..2**32-1", "0 is reserved")

    def rain_mm_until(self, t_s: float) -> float:
        """Cumulative rain (mm) that has fallen in [0, t_s]."""
        total = 0.0
        for i, step in enumerate(self.rain):
            end = self.rain[i + 1].t_s if i + 1 < len(self.rain) else math.inf
            if t_s <= step.t_s:
                break
            total += step.mm_per_h * (min(t_s, end) - step.t_s) / 3600.0
        return total

    def physical_tips_until(self, t_s: float) -> int:
        """Tips of the bucket in [0, t_s] (the bucket keeps its partial fill across device reboots)."""
        return math.floor(self.rain_mm_until(t_s) / self.mm_per_tip + 1e-9)


_NESTED: Mapping[str, type[Any]] = {
    "rain": RainStep,
    "seismic_events": SeismicEvent,
    "wire": WireChange,
    "outages": Outage,
    "garbage": Garbage,
}


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    """Build a Scenario from plain data (lists of dicts for the timed entries)."""
    known = {f.name for f in fields(Scenario)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(f"scenario: unknown keys {unknown}", fix=f"use only {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        try:
            if key in _NESTED:
                cls = _NESTED[key]
                items = []
                for item in value:
                    entry = dict(item)
                    if cls is WireChange:
                        entry["state"] = WireState(entry["state"])
                    items.append(cls(**entry))
                kwargs[key] = tuple(items)
            elif key in ("firmware", "reboots", "seismic_trace", "boot_ids"):
                kwargs[key] = tuple(value)
            elif key == "seismic_format":
                kwargs[key] = SampleFormat(value)
            else:
                kwargs[key] = value
        except (TypeError, ValueError, KeyError) as exc:
            raise ScenarioError(
                f"scenario: bad value for {key!r}: {exc}", fix="see firmware_bridge/scenario.py"
            ) from exc
    return Scenario(**kwargs)
