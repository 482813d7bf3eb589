"""The demo's SYNTHETIC storm scenario: weeks of calm, a storm, a surging slide, a wire trip.

Everything here is simulated (labelled synthetic in every output of the demo). Times are in scenario
days; the simulators run them time-compressed. The storm is designed so that rain (Guzzetti 2008 ID
curve) and the slide's velocity reach level 2 before the wire alarm trips, and velocity stays below
the level-3 threshold (20 mm/day by default) so level 3 comes from the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.sensors.gnss import Reference
from agent.sensors.gnss_sim import QualitySegment, SimConfig, Trajectory
from firmware_bridge.messages import WireState
from firmware_bridge.scenario import RainStep, Scenario, WireChange

DAY = 86_400.0
START_UTC = 1_767_225_600.0  # 2026-01-01T00:00:00Z, scenario day 0 (synthetic)
REFERENCE = Reference(lat=46.3712, lon=13.6258, h_m=842.0)  # a made-up alpine site

# (start day, hours, mm/h): background showers (below the ID curve), then the storm.
RAIN_SPELLS: tuple[tuple[float, float, float], ...] = (
    (5.2, 4, 0.8),
    (12.5, 6, 0.6),
    (20.1, 5, 0.8),
    (27.6, 3, 0.7),
    (33.3, 8, 0.5),
    (39.0, 4, 0.8),
    (44.0, 48, 3.0),  # the storm: eight wet days without a dry spell, peaking on days 48-50
    (46.0, 48, 6.0),
    (48.0, 48, 10.0),
    (50.0, 48, 5.0),
    (52.0, 24, 2.0),
)
# (day, horizontal velocity mm/day): creep, then a surge as pore pressure peaks after the storm, then
# the run-up to failure after the wire trip. The surge is a step to a nearly steady rate, not a
# hyperbolic acceleration: the inverse-velocity (Fukuzono) rule then has too few accelerating points to
# predict failure within a day before the wire trips, and the velocity (<= 6.5 mm/day, watch) stays
# far below the 20 mm/day warning threshold, so level 3 comes from the wire, as the scenario intends.
VELOCITY_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.3),
    (49.5, 0.3),
    (50.5, 6.0),
    (53.5, 6.5),
    (56.0, 14.0),
)
WIRE_TRIP_DAY = 53.5
DAYS = 55.0
AZIMUTH_DEG = 120.0  # direction of motion, clockwise from north


@dataclass(frozen=True)
class DemoScenario:
    bridge: Scenario
    gnss: SimConfig
    days: float
    wire_trip_t: float  # UTC seconds

    def describe(self) -> str:
        return (
            f"SYNTHETIC storm scenario: {self.days:g} days from 2026-01-01; storm from day 44, "
            f"slide surging from day 49.5, wire trips on day {WIRE_TRIP_DAY:g}"
        )


def rain_steps() -> tuple[RainStep, ...]:
    """Spells as rate steps; a spell that ends where the next begins flows straight into it."""
    steps: list[RainStep] = []
    for i, (day, hours, rate) in enumerate(RAIN_SPELLS):
        steps.append(RainStep(day * DAY, rate))
        end = day * DAY + hours * 3600.0
        nxt = RAIN_SPELLS[i + 1][0] * DAY if i + 1 < len(RAIN_SPELLS) else float("inf")
        if end < nxt:
            steps.append(RainStep(end, 0.0))
    return tuple(steps)


def trajectory(days: float = DAYS, step_days: float = 0.25) -> Trajectory:
    """Cumulative displacement from integrating the velocity knots, along AZIMUTH_DEG; a little uplift."""
    t_days = np.arange(0.0, days + step_days, step_days)
    kd, kv = zip(*VELOCITY_KNOTS, strict=True)
    v = np.interp(t_days, kd, kv)
    disp = np.concatenate(([0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t_days))))
    az = np.deg2rad(AZIMUTH_DEG)
    return Trajectory(
        t_s=tuple((t_days * DAY).tolist()),
        e_mm=tuple((disp * np.sin(az)).tolist()),
        n_mm=tuple((disp * np.cos(az)).tolist()),
        u_mm=tuple((-0.2 * disp).tolist()),
    )


def storm(seed: int = 7, gnss_period_s: float = 900.0, days: float = DAYS) -> DemoScenario:
    """The demo's storm; ``days`` > 55 lets the devices run on after the trip (the slide at 14 mm/day)."""
    duration = days * DAY
    bridge = Scenario(
        duration_s=duration,
        start_utc=START_UTC,
        seed=seed,
        rain=rain_steps(),
        rain_period_s=gnss_period_s,
        rain_check_s=300.0,
        heartbeat_period_s=1800.0,
        seismic_rate_hz=0,  # a geophone at 100 Hz cannot be time-compressed 10^5 x; off in the demo
        wire=(WireChange(WIRE_TRIP_DAY * DAY, WireState.TRIPPED),),
    )
    gnss = SimConfig(
        reference=REFERENCE,
        trajectory=trajectory(days),
        start_utc=START_UTC,
        rate_hz=1.0 / gnss_period_s,
        duration_s=duration,
        noise_mm=(2.0, 2.0, 5.0),
        quality=(QualitySegment(0.0),),
        emit=("NAV-PVT", "NAV-HPPOSLLH"),  # HPPOSLLH: 0.1 mm resolution (NAV-PVT alone: ~1 cm)
        seed=seed,
    )
    return DemoScenario(bridge, gnss, days, START_UTC + WIRE_TRIP_DAY * DAY)
