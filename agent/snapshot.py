"""What the warning engine sees: pure functions from stored steps and samples to its typed inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from agent.features.aggregate import DAY_S, HOUR_S, StepTable
from agent.sensors import rain
from agent.warning.inputs import DisplacementInput, RainInput, SeismicInput, WireInput, WireState

# Rolling intensity windows (h) reported to the rainfall rule; antecedent totals (days) for context.
INTENSITY_WINDOWS_H: tuple[float, ...] = (1.0, 3.0, 6.0, 24.0)
ANTECEDENT_DAYS: tuple[int, ...] = (3, 7, 14)
RAIN_LOOKBACK_S = 15 * DAY_S
DISPLACEMENT_STEPS = 30


def wire_input(state: int, t: float, changed_at: float) -> WireInput | None:
    """A decoded ``wire.state`` sample as the engine's input (None for an unknown code)."""
    try:
        return WireInput(WireState(int(state)), t, changed_at)
    except ValueError:
        return None


def displacement_input(daily: StepTable) -> DisplacementInput | None:
    """Cumulative horizontal displacement of the last daily steps (None when no step has a position)."""
    if len(daily) == 0:
        return None
    e, n = daily.values["disp_e_mm"], daily.values["disp_n_mm"]
    if not np.isfinite(e).any():
        return None
    comp = np.minimum(daily.completeness["disp_e_mm"], daily.completeness["disp_n_mm"])
    times = daily.times + daily.step_s  # a step's value is known at its end
    last = int(np.flatnonzero(np.isfinite(e))[-1])
    di = DisplacementInput.from_east_north(times, e, n, comp)
    return DisplacementInput(di.times, di.displacement_mm, di.completeness, float(times[last]))


def rain_input(hourly: StepTable, now: float, dry_gap_h: float = 6.0) -> RainInput | None:
    """Rolling intensities, the current rain event and antecedent totals from hourly rain steps."""
    if len(hourly) == 0 or hourly.step_s != HOUR_S:
        return None
    mm = hourly.values["rain_mm"]
    comp = hourly.completeness["rain_mm"]
    if not (comp > 0).any():
        return None
    filled = np.where(np.isfinite(mm), mm, 0.0)
    summ = rain.summary(filled, HOUR_S, INTENSITY_WINDOWS_H, ANTECEDENT_DAYS)
    intensities = {w: summ[f"intensity_{w:g}h_mm_h"] for w in INTENSITY_WINDOWS_H}
    antecedent = {float(d): summ[f"antecedent_{d}d_mm"] for d in ANTECEDENT_DAYS}
    events = rain.rain_events(hourly.times, filled, HOUR_S, dry_gap_h=dry_gap_h)
    duration, mean_i = 0.0, 0.0
    if events and now - events[-1].end <= dry_gap_h * 3600.0:
        duration, mean_i = events[-1].duration_h, events[-1].mean_intensity_mm_h
    last_day = comp[-24:]
    last = np.flatnonzero(comp > 0)
    t = float(hourly.times[last[-1]] + HOUR_S) if last.size else now
    return RainInput(
        t=min(t, now),
        intensities_mm_h={k: (v if math.isfinite(v) else 0.0) for k, v in intensities.items()},
        event_duration_h=duration,
        event_mean_intensity_mm_h=mean_i,
        completeness=float(np.mean(last_day)) if last_day.size else 0.0,
        antecedent_mm={k: v for k, v in antecedent.items() if math.isfinite(v)},
        hourly_start=hourly.times.astype(np.float64),
        hourly_mm=filled,
        hourly_present=comp > 0,
    )


def seismic_input(
    samples: Mapping[str, tuple[np.ndarray, np.ndarray]], now: float, window_s: float
) -> SeismicInput | None:
    """PGV and STA/LTA trigger-ons of the last ``window_s`` (None when the geophone said nothing)."""
    pgv_t, pgv_v = samples.get("seismic.pgv_mm_s", (np.empty(0), np.empty(0)))
    trig_t, trig_v = samples.get("seismic.trigger", (np.empty(0), np.empty(0)))
    if pgv_t.size == 0 and trig_t.size == 0:
        return None
    recent = pgv_t >= now - window_s
    pgv = float(np.max(pgv_v[recent])) if recent.any() else 0.0
    triggers = int(np.sum((trig_t >= now - window_s) & (trig_v == 1)))
    last = max(
        float(pgv_t.max()) if pgv_t.size else -math.inf, float(trig_t.max()) if trig_t.size else -math.inf
    )
    return SeismicInput(t=last, pgv_mm_s=pgv, trigger_count=triggers, window_s=window_s)
