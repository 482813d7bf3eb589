"""Pure per-source rules: wire alarm, displacement forecast, seismic and spatial risk.

Each rule maps (input, now, settings) to a :class:`SourceLevel`. Missing, stale, incomplete or
non-finite inputs give ``NO_DATA`` with the reason. Velocity/inverse velocity live in kinematics.py,
rainfall in rainfall.py. docs/warning-engine.md documents every rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from agent.warning.inputs import ForecastInput, SeismicInput, SpatialInput, WireInput, WireState
from agent.warning.levels import Level, SourceLevel, grade, no_data
from agent.warning.settings import (
    ForecastSettings,
    SeismicSettings,
    SpatialSettings,
    WireSettings,
)

# Data stamped further in the future than this is not trusted (clock trouble), in seconds.
FUTURE_TOLERANCE_S = 300.0


def freshness_problem(
    t: float,
    now: float,
    max_age_s: float,
    completeness: float | None = None,
    min_completeness: float | None = None,
) -> str | None:
    """Why an input cannot be judged (stale, from the future, incomplete), or None if it can."""
    if not math.isfinite(t):
        return "input time is not finite"
    age = now - t
    if age > max_age_s:
        return f"stale: last update {age:.0f} s ago > max age {max_age_s:.0f} s"
    if age < -FUTURE_TOLERANCE_S:
        return f"input time is {-age:.0f} s ahead of the clock"
    if min_completeness is not None:
        if completeness is None:
            return "completeness not reported"
        if not math.isfinite(completeness):
            return "completeness is not finite"
        if completeness < min_completeness:
            return f"incomplete: completeness {completeness:.2f} < minimum {min_completeness:.2f}"
    return None


def wire_rule(wire: WireInput | None, now: float, cfg: WireSettings) -> SourceLevel:
    """Wire alarm: tripped -> 3 at once (even if the reading is stale: a trip is never forgotten);
    open circuit / short -> ``fault_level`` with the fault flag; intact -> 0; stale intact -> NO_DATA."""
    if wire is None:
        return no_data("wire", "no wire reading yet")
    try:
        state = WireState(int(wire.state))
    except (TypeError, ValueError):
        return no_data("wire", f"unknown wire state {wire.state!r}")
    if state is not wire.state:
        wire = WireInput(state, wire.t, wire.changed_at)
    age = now - wire.t
    evidence = {
        "state": wire.state.name.lower(),
        "changed_at_age_s": now - wire.changed_at,
        "reading_age_s": age,
        "max_age_s": cfg.max_age_s,
    }
    valid_until = wire.t + cfg.max_age_s
    if wire.state is WireState.TRIPPED:
        stale = age > cfg.max_age_s
        reason = "wire alarm tripped" + (" (last reading is stale; a trip is held)" if stale else "")
        return SourceLevel(
            "wire",
            Level.WARNING,
            {**evidence, "stale": stale},
            valid_until,
            Level.WARNING,
            data_time=wire.t,
            reason=reason,
        )
    problem = freshness_problem(wire.t, now, cfg.max_age_s)
    if problem is not None:
        return no_data("wire", problem, **evidence)
    if wire.state in (WireState.OPEN_CIRCUIT, WireState.SHORT):
        level = Level(cfg.fault_level)
        reason = f"wire {wire.state.name.lower().replace('_', ' ')}: the wire cannot confirm safety"
        return SourceLevel(
            "wire",
            level,
            {**evidence, "fault_level": cfg.fault_level},
            valid_until,
            level,
            fault=True,
            data_time=wire.t,
            reason=reason,
        )
    return SourceLevel(
        "wire", Level.NORMAL, evidence, valid_until, Level.NORMAL, data_time=wire.t, reason="wire intact"
    )


def _probability_for(exceedance: Mapping[float, float], threshold_mm: float) -> tuple[float, float] | None:
    """The exceedance probability for the smallest model threshold >= ``threshold_mm``.

    P(X > T) for T >= T_k is a lower bound of P(X > T_k), so using it never raises a level falsely.
    """
    usable = sorted((float(t), float(p)) for t, p in exceedance.items() if float(t) >= threshold_mm - 1e-9)
    usable = [(t, p) for t, p in usable if math.isfinite(p) and 0.0 <= p <= 1.0]
    return usable[0] if usable else None


def _alarm_rate(
    fc: ForecastInput, cfg: ForecastSettings, band: float
) -> tuple[Level, Level, dict[str, float | int] | None]:
    """Level from P(K-day velocity > V within the horizon) >= the bundle's calibrated cutoff."""
    p, cut = fc.alarm_probability, fc.alarm_cutoff
    if not (math.isfinite(p) and math.isfinite(cut)):
        return Level.NORMAL, Level.NORMAL, None
    evidence = {"p": p, "cutoff": cut, "level": cfg.alarm_rate_level}
    level = Level(cfg.alarm_rate_level) if p >= cut else Level.NORMAL
    release = Level(cfg.alarm_rate_level) if p >= cut * (1.0 - band) else Level.NORMAL
    return level, release, evidence


def forecast_rule(fc: ForecastInput | None, now: float, cfg: ForecastSettings, band: float) -> SourceLevel:
    """Forecast: grade the displacement (by ``interval_policy``) and the exceedance probabilities;
    the source level is the higher of the two."""
    if fc is None:
        return no_data("forecast", "no forecast yet")
    model = f"{fc.model_name}@{fc.model_version}"
    problem = freshness_problem(fc.t, now, cfg.max_age_s, fc.completeness, cfg.min_completeness)
    if problem is None and not math.isfinite(fc.predicted_mm):
        problem = "predicted displacement is not finite"
    if problem is not None:
        return no_data("forecast", problem, model=model, completeness=fc.completeness)
    thresholds = cfg.displacement_mm.as_tuple()
    has_interval = math.isfinite(fc.interval_lo_mm) and math.isfinite(fc.interval_hi_mm)
    by_value = {"point": fc.predicted_mm}
    if has_interval:
        by_value |= {"lower": fc.interval_lo_mm, "upper": fc.interval_hi_mm}
    grades = {k: grade(v, thresholds, band=band) for k, v in by_value.items()}
    policy = cfg.interval_policy if cfg.interval_policy in grades else "point"
    disp = grades[policy]
    prob_level, prob_release = Level.NORMAL, Level.NORMAL
    prob_evidence: list[dict[str, float | int | None]] = []
    for k, (thr, p_min) in enumerate(zip(thresholds, cfg.exceedance_probability.as_tuple(), strict=True), 1):
        if thr is None or p_min is None:
            continue
        found = _probability_for(fc.exceedance, thr)
        if found is None:
            continue
        model_thr, p = found
        prob_evidence.append(
            {"level": k, "threshold_mm": thr, "model_threshold_mm": model_thr, "p": p, "p_min": p_min}
        )
        if p >= p_min:
            prob_level = Level(k)
        if p >= p_min * (1.0 - band):
            prob_release = Level(k)
    alarm_level, alarm_release, alarm = _alarm_rate(fc, cfg, band)
    level = max(disp.level, prob_level, alarm_level)
    release = max(disp.release_level, prob_release, alarm_release, level)
    driver = "exceedance probability" if prob_level > disp.level else f"{policy} displacement"
    if alarm_level > max(disp.level, prob_level):
        driver = "alarm-rate forecast"
    evidence = {
        "predicted_mm": fc.predicted_mm,
        "interval_lo_mm": fc.interval_lo_mm,
        "interval_hi_mm": fc.interval_hi_mm,
        "interval_level": fc.interval_level,
        "interval_policy": policy,
        "level_by": {k: int(g.level) for k, g in grades.items()},
        "thresholds_mm": disp.thresholds,
        "exceedance": prob_evidence,
        "alarm_rate": alarm,
        "horizon_s": fc.horizon_s,
        "driver": driver,
    }
    per = "next step" if fc.horizon_s <= 86400 else f"per day over {fc.horizon_s / 86400:g} d"
    reason = f"forecast {fc.predicted_mm:.2f} mm {per}; level {int(level)} by {driver}"
    return SourceLevel(
        "forecast",
        level,
        evidence,
        fc.t + cfg.max_age_s,
        release,
        completeness=fc.completeness,
        model=model,
        data_time=fc.t,
        reason=reason,
    )


def seismic_rule(s: SeismicInput | None, now: float, cfg: SeismicSettings, band: float) -> SourceLevel:
    """Seismic: the higher of the PGV grade and the STA/LTA trigger-count grade."""
    if s is None:
        return no_data("seismic", "no seismic summary yet")
    problem = freshness_problem(s.t, now, cfg.max_age_s, s.completeness, cfg.min_completeness)
    if problem is None and not (math.isfinite(s.pgv_mm_s) and s.pgv_mm_s >= 0):
        problem = f"PGV {s.pgv_mm_s} is not a non-negative number"
    if problem is None and s.trigger_count < 0:
        problem = f"trigger count {s.trigger_count} is negative"
    if problem is not None:
        return no_data("seismic", problem, completeness=s.completeness)
    g_pgv = grade(s.pgv_mm_s, cfg.pgv_mm_s.as_tuple(), band=band)
    g_trg = grade(float(s.trigger_count), cfg.trigger_count.as_tuple(), band=0.0)
    level = max(g_pgv.level, g_trg.level)
    evidence = {
        "pgv_mm_s": s.pgv_mm_s,
        "pgv_thresholds_mm_s": g_pgv.thresholds,
        "trigger_count": s.trigger_count,
        "trigger_thresholds": g_trg.thresholds,
        "window_s": s.window_s,
    }
    return SourceLevel(
        "seismic",
        level,
        evidence,
        s.t + cfg.max_age_s,
        max(g_pgv.release_level, g_trg.release_level),
        completeness=s.completeness,
        data_time=s.t,
        reason=f"PGV {s.pgv_mm_s:.1f} mm/s, {s.trigger_count} STA/LTA triggers in {s.window_s:.0f} s",
    )


def spatial_rule(sp: SpatialInput | None, now: float, cfg: SpatialSettings, band: float) -> SourceLevel:
    """Spatial risk: grade the fraction of the site area above the map's probability threshold."""
    if sp is None:
        return no_data("spatial", "no risk-map summary yet")
    model = f"{sp.model_name}@{sp.model_version}"
    problem = freshness_problem(sp.t, now, cfg.max_age_s, sp.completeness, cfg.min_completeness)
    if problem is None and not (
        math.isfinite(sp.area_fraction_above) and 0.0 <= sp.area_fraction_above <= 1.0
    ):
        problem = f"area fraction {sp.area_fraction_above} is not in [0, 1]"
    if problem is not None:
        return no_data("spatial", problem, model=model, completeness=sp.completeness)
    g = grade(sp.area_fraction_above, cfg.area_fraction.as_tuple(), band=band)
    evidence = {
        "area_fraction_above": sp.area_fraction_above,
        "probability_threshold": sp.probability_threshold,
        "max_probability": sp.max_probability,
        "area_fraction_thresholds": g.thresholds,
    }
    return SourceLevel(
        "spatial",
        g.level,
        evidence,
        sp.t + cfg.max_age_s,
        g.release_level,
        completeness=sp.completeness,
        model=model,
        data_time=sp.t,
        reason=f"{100 * sp.area_fraction_above:.1f} % of the site above p={sp.probability_threshold:.2f}",
    )
