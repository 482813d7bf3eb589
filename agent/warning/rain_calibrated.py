"""Site-calibrated rain rules (``rainfall.calibrated``): N-hour / N-day totals and a logistic probability.

Pure. For each configured level the rule computes its predictor from the hourly record (rolling N-hour
totals, running day totals, antecedent days; :mod:`agent.features.rain_windows`) now and at each hour
of the hold period, and grades the highest value of the last ``hold_after_rain_s``: a level stays up
that long after the rain fell below it (Sitka holds 6 h). The evidence carries, for the level reached,
the predictor, its value, the threshold, the model's probability and the validation figures the level
was chosen with.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.features.rain_windows import LivePredictors, held_value, live_predictors
from agent.warning.inputs import RainInput
from agent.warning.levels import Level, SourceLevel, no_data
from agent.warning.rain_settings import CalibratedLevel, CalibratedRain

LEVEL_NAMES = {1: "advisory", 2: "watch", 3: "warning"}


def _probability_series(rule: CalibratedLevel, live: LivePredictors) -> NDArray[np.float64]:
    if not rule.coef:
        return np.full(live.times.size, np.nan)
    z = np.full(live.times.size, rule.intercept)
    for name, b in rule.coef.items():
        z = z + b * live.history[name]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -700.0, 700.0)))


def _judge(rule: CalibratedLevel, live: LivePredictors, now: float, hold_s: float) -> dict[str, Any]:
    missing = [n for n in rule.inputs if not math.isfinite(live.now.get(n, math.nan))]
    prob = _probability_series(rule, live)
    score = prob if rule.kind == "probability" else live.history[rule.predictor]
    held = held_value(live.times, score, now, hold_s)
    at = np.flatnonzero((live.times >= now - hold_s - 1e-6) & np.isfinite(score))
    when = float(live.times[at[np.argmax(score[at])]]) if at.size else math.nan
    p_held = float(prob[at[np.argmax(score[at])]]) if at.size else math.nan
    return {
        "kind": rule.kind,
        "predictor": rule.predictor,
        "inputs": {n: live.now.get(n, math.nan) for n in rule.inputs},
        "value_now": float(score[-1]),
        "value": held,
        "value_at_s_ago": now - when if math.isfinite(when) else None,
        "threshold": rule.threshold,
        "unit": "mm" if rule.kind == "total" else "probability",
        "probability": p_held,
        "validation": dict(rule.validation),
        "missing": missing,
    }


def calibrated_rule(
    rain: RainInput, now: float, cal: CalibratedRain, band: float, max_age_s: float, id_curve: SourceLevel
) -> SourceLevel:
    """Grade the calibrated levels on the held predictor values (freshness is checked by the caller)."""
    levels = cal.levels()
    if not levels:
        return no_data("rainfall", "rainfall.calibrated has no level on (all off)")
    if rain.hourly_start is None or rain.hourly_mm is None or rain.hourly_present is None:
        return no_data("rainfall", "no hourly rain record for the calibrated rules")
    history_h = max(1, math.ceil(cal.hold_after_rain_s / 3600.0))
    live = live_predictors(
        rain.hourly_start, rain.hourly_mm, rain.hourly_present, now, cal.day_offset_h, history_h
    )
    judged = {k: _judge(rule, live, now, cal.hold_after_rain_s) for k, rule in levels}
    usable = {k: j for k, j in judged.items() if not j["missing"] and math.isfinite(j["value"])}
    id_evidence = {
        "level": int(id_curve.level),
        "reason": id_curve.reason,
        "ratio": id_curve.evidence.get("ratio"),
        "curve": id_curve.evidence.get("curve"),
    }
    evidence: dict[str, Any] = {
        "rule": "calibrated",
        "calibration": cal.source,
        "calibration_events": cal.events,
        "calibration_years": cal.years,
        "hold_after_rain_s": cal.hold_after_rain_s,
        "levels": {LEVEL_NAMES[k]: j for k, j in judged.items()},
        "id_curve": id_evidence,
    }
    if not usable:
        gaps = sorted({n for j in judged.values() for n in j["missing"]})
        return no_data("rainfall", f"rain record too short or gappy for {', '.join(gaps)}", **evidence)
    level, release = Level.NORMAL, Level.NORMAL
    for k, j in usable.items():
        if j["value"] >= j["threshold"]:
            level = max(level, Level(k))
        if j["value"] >= j["threshold"] * (1.0 - band):
            release = max(release, Level(k))
    shown_k = int(level) if level > 0 else min(usable)
    shown = usable[shown_k]
    evidence |= {
        k: shown[k] for k in ("predictor", "value", "threshold", "unit", "probability", "validation")
    }
    evidence["level_shown"] = LEVEL_NAMES[shown_k]
    reason = _reason(int(level), shown, LEVEL_NAMES[shown_k])
    return SourceLevel(
        "rainfall",
        level,
        evidence,
        rain.t + max_age_s,
        max(release, level),
        completeness=rain.completeness,
        data_time=rain.t,
        reason=reason,
    )


def _fmt(j: dict[str, Any], key: str) -> str:
    v = j[key]
    return f"{v:.1f} mm" if j["unit"] == "mm" else f"P={v:.3f}"


def _reason(level: int, j: dict[str, Any], name: str) -> str:
    val = j["validation"]
    fig = ""
    if val:
        fig = (
            f"; calibrated {val.get('method', '')}: POD {val.get('pod', float('nan')):.2f} of "
            f"{val.get('events', '?')} events, {val.get('false_alarm_days_per_year', float('nan')):.2f} "
            "false-alarm days/yr"
        )
    p = j["probability"]
    prob = f", P(landslide today)={p:.3f}" if isinstance(p, float) and math.isfinite(p) else ""
    if level > 0:
        return f"{j['predictor']} {_fmt(j, 'value')} >= {name} threshold {_fmt(j, 'threshold')}{prob}{fig}"
    return f"{j['predictor']} {_fmt(j, 'value')} below the {name} threshold {_fmt(j, 'threshold')}{prob}"
