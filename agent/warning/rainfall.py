"""Rainfall intensity-duration (ID) threshold rule, and a helper that finds the current rain event.

Default curve: Guzzetti et al. (2008), "The rainfall intensity-duration control of shallow landslides
and debris flows: an update", Landslides 5:3-17 — global minimum threshold I = 2.20 D^-0.44
(I in mm/h, D in h, valid for 0.1 h < D < 1000 h). Every (duration, mean intensity) pair the input
offers — the current event and each rolling window — is compared with the curve; the worst ratio
I / I_threshold(D) is graded against multiples of the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from agent.warning.inputs import RainInput
from agent.warning.levels import SourceLevel, grade, no_data
from agent.warning.rain_calibrated import calibrated_rule
from agent.warning.rules import freshness_problem
from agent.warning.settings import RainfallSettings


def id_threshold_mm_h(duration_h: float, cfg: RainfallSettings) -> float:
    """Threshold mean intensity (mm/h) for a rain of ``duration_h`` hours: I = alpha * D^-beta."""
    return cfg.alpha * duration_h ** (-cfg.beta)


def rainfall_rule(rain: RainInput | None, now: float, cfg: RainfallSettings, band: float) -> SourceLevel:
    """Grade the worst intensity/threshold ratio over the current event and the rolling windows."""
    if rain is None:
        return no_data("rainfall", "no rain summary yet")
    problem = freshness_problem(rain.t, now, cfg.max_age_s, rain.completeness, cfg.min_completeness)
    if problem is not None:
        return no_data("rainfall", problem, completeness=rain.completeness)
    id_level = _id_curve_rule(rain, cfg, band)
    if cfg.calibrated is None:
        return id_level
    return calibrated_rule(rain, now, cfg.calibrated, band, cfg.max_age_s, id_level)


def _id_curve_rule(rain: RainInput, cfg: RainfallSettings, band: float) -> SourceLevel:
    pairs: list[tuple[str, float, float]] = [("event", rain.event_duration_h, rain.event_mean_intensity_mm_h)]
    pairs += [(f"rolling_{w:g}h", float(w), float(i)) for w, i in sorted(rain.intensities_mm_h.items())]
    checked: list[dict[str, float | str]] = []
    skipped: list[str] = []
    for name, dur, inten in pairs:
        if not (math.isfinite(dur) and math.isfinite(inten)) or inten < 0:
            skipped.append(f"{name}: not a finite non-negative intensity")
            continue
        if not cfg.min_duration_h <= dur <= cfg.max_duration_h:
            skipped.append(
                f"{name}: duration {dur:g} h outside the curve's "
                f"{cfg.min_duration_h:g}-{cfg.max_duration_h:g} h"
            )
            continue
        thr = id_threshold_mm_h(dur, cfg)
        checked.append({"name": name, "duration_h": dur, "intensity_mm_h": inten, "threshold_mm_h": thr,
                        "ratio": inten / thr})  # fmt: skip
    evidence: dict[str, object] = {
        "curve": f"I = {cfg.alpha:g} * D^-{cfg.beta:g}",
        "curve_source": cfg.curve_source,
        "multiples": dict(zip(("advisory", "watch", "warning"), cfg.multiples.as_tuple(), strict=True)),
        "checked": checked,
        "skipped": skipped,
        "antecedent_mm": {f"{k:g}d": v for k, v in sorted(rain.antecedent_mm.items())},
    }
    if not checked:
        reason = "no rain duration inside the curve's validity range"
        return no_data("rainfall", reason, **evidence)
    worst = max(checked, key=lambda c: float(c["ratio"]))
    ratio = float(worst["ratio"])
    g = grade(ratio, cfg.multiples.as_tuple(), band=band)
    evidence["ratio"] = ratio
    evidence["worst"] = worst["name"]
    reason = (
        f"{worst['name']}: {float(worst['intensity_mm_h']):.2f} mm/h over {float(worst['duration_h']):g} h "
        f"= {ratio:.2f} x the ID threshold"
    )
    return SourceLevel(
        "rainfall",
        g.level,
        evidence,
        rain.t + cfg.max_age_s,
        g.release_level,
        completeness=rain.completeness,
        data_time=rain.t,
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class RainEvent:
    """A rain event: start/end (epoch s), duration (h), total (mm) and mean intensity (mm/h)."""

    start: float
    end: float
    duration_h: float
    total_mm: float
    mean_intensity_mm_h: float


def rain_events(
    times: ArrayLike, rain_mm: ArrayLike, step_s: float, dry_gap_h: float = 6.0
) -> list[RainEvent]:
    """Split a per-step rain series (mm in the step ending at ``times``) into events separated by at
    least ``dry_gap_h`` hours without rain. NaN steps count as dry (reported via completeness elsewhere)."""
    t_arr = np.asarray(times, dtype=np.float64)
    rain = np.nan_to_num(np.asarray(rain_mm, dtype=np.float64), nan=0.0)
    wet = np.flatnonzero(rain > 0)
    events: list[RainEvent] = []
    if wet.size == 0:
        return events
    gap_s = dry_gap_h * 3600.0
    begin = prev = int(wet[0])
    for idx in [*wet[1:].tolist(), None]:
        if idx is not None and t_arr[idx] - step_s - t_arr[prev] < gap_s:
            prev = idx
            continue
        start = float(t_arr[begin]) - step_s
        end = float(t_arr[prev])
        dur_h = (end - start) / 3600.0
        total = float(rain[begin : prev + 1].sum())
        events.append(RainEvent(start, end, dur_h, total, total / dur_h))
        if idx is not None:
            begin = prev = idx
    return events


def rain_summary(
    times: ArrayLike,
    rain_mm: ArrayLike,
    now: float,
    step_s: float,
    windows_h: tuple[float, ...] = (1.0, 3.0, 6.0, 24.0, 72.0),
    antecedent_days: tuple[float, ...] = (3.0, 7.0, 30.0),
    dry_gap_h: float = 6.0,
) -> RainInput:
    """Build the engine's :class:`RainInput` from a per-step rain series (mm in the step ending at each time).

    Rolling intensity over ``w`` hours = rain in (now - w, now] / w. The current event is the last
    :func:`rain_events` event if it ended less than ``dry_gap_h`` before ``now`` (else duration 0, which
    the ID rule skips). Completeness = present steps / expected steps over the longest rolling window.
    """
    t_arr = np.asarray(times, dtype=np.float64)
    rain = np.asarray(rain_mm, dtype=np.float64)
    if t_arr.shape != rain.shape or t_arr.ndim != 1:
        raise ValueError(f"rain times {t_arr.shape} and values {rain.shape} differ in shape")
    keep = t_arr <= now
    t_arr, rain = t_arr[keep], rain[keep]
    longest_h = max(windows_h)
    in_long = t_arr > now - longest_h * 3600.0
    expected = max(1, round(longest_h * 3600.0 / step_s))
    completeness = min(1.0, float(np.isfinite(rain[in_long]).sum()) / expected)
    intensities = {w: float(np.nansum(rain[t_arr > now - w * 3600.0])) / w for w in windows_h}
    antecedent = {d: float(np.nansum(rain[t_arr > now - d * 86400.0])) for d in antecedent_days}
    events = rain_events(t_arr, rain, step_s, dry_gap_h)
    current = events[-1] if events and now - events[-1].end < dry_gap_h * 3600.0 else None
    hourly = step_s == 3600.0
    return RainInput(
        t=float(t_arr[-1]) if t_arr.size else float("nan"),
        intensities_mm_h=intensities,
        event_duration_h=current.duration_h if current else 0.0,
        event_mean_intensity_mm_h=current.mean_intensity_mm_h if current else 0.0,
        completeness=completeness,
        antecedent_mm=antecedent,
        hourly_start=t_arr - step_s if hourly else None,
        hourly_mm=rain if hourly else None,
        hourly_present=np.isfinite(rain) if hourly else None,
    )
