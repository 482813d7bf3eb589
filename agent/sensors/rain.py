"""Rain: tip counter -> ``rain.mm`` samples -> mm per step, rolling intensities, antecedent totals, events.

Pure numpy. A step series is ``(step_start_times, mm_per_step)`` on a regular grid; NaN marks a step
with no data. Rolling sums are trailing (the window ends with the step) and NaN when any step inside
is missing, so an intensity is never computed from partial data. Rain events feed the LSI rainfall
multiplier R_m = (P/P0)^a (D/D0)^b (total P, duration D) and intensity-duration thresholds.
See docs/sensors.md.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_INTENSITY_WINDOWS_H = (1.0, 3.0, 6.0, 24.0)
DEFAULT_ANTECEDENT_DAYS = (3, 7, 14, 30)


def per_interval(
    times: Sequence[float] | np.ndarray,
    mm: Sequence[float] | np.ndarray,
    step_s: float,
    t0: float,
    n_steps: int,
    coverage: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Sum ``rain.mm`` samples into ``n_steps`` steps of ``step_s`` from ``t0`` (sample at t counts in
    the step containing t). Steps listed as not covered (``coverage`` < 1) become NaN; samples
    outside the grid are ignored."""
    if not step_s > 0 or n_steps < 0:
        raise ConfigError(f"rain step {step_s} s / {n_steps} steps is invalid", fix="use a positive step")
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(mm, dtype=np.float64)
    idx = np.floor((t - t0) / step_s).astype(np.int64)
    ok = (idx >= 0) & (idx < n_steps) & np.isfinite(v)
    out = np.bincount(idx[ok], weights=v[ok], minlength=n_steps).astype(np.float64)
    if coverage is not None:
        out[np.asarray(coverage, dtype=np.float64) < 1.0] = np.nan
    return out


def rolling_sum(step_mm: np.ndarray, n: int) -> np.ndarray:
    """Trailing sum over ``n`` steps (the window ends at each step); NaN until full or if any NaN inside."""
    x = np.asarray(step_mm, dtype=np.float64)
    if n < 1:
        raise ConfigError(f"rolling window of {n} steps", fix="use a window of at least one step")
    out = np.full(len(x), np.nan)
    if len(x) < n:
        return out
    bad = np.concatenate(([0], np.cumsum(~np.isfinite(x))))
    c = np.concatenate(([0.0], np.cumsum(np.where(np.isfinite(x), x, 0.0))))
    sums = c[n:] - c[:-n]
    nbad = bad[n:] - bad[:-n]
    out[n - 1 :] = np.where(nbad == 0, sums, np.nan)
    return out


def _steps(hours: float, step_s: float) -> int:
    n = hours * 3600.0 / step_s
    if n < 1 or abs(n - round(n)) > 1e-9:
        raise ConfigError(
            f"rain window {hours} h is not a whole number (>= 1) of {step_s} s steps",
            fix="choose windows that are multiples of the step",
        )
    return round(n)


def intensities(
    step_mm: np.ndarray, step_s: float, windows_h: Iterable[float] = DEFAULT_INTENSITY_WINDOWS_H
) -> dict[float, np.ndarray]:
    """Mean intensity in mm/h over trailing windows, for each window length in hours."""
    return {w: rolling_sum(step_mm, _steps(w, step_s)) / w for w in windows_h}


def antecedent_totals(
    step_mm: np.ndarray,
    step_s: float,
    days: Iterable[int] = DEFAULT_ANTECEDENT_DAYS,
    *,
    exclude_current: bool = False,
) -> dict[int, np.ndarray]:
    """Trailing totals in mm over ``days``; ``exclude_current``: the rain before each step, without it."""
    x = np.asarray(step_mm, dtype=np.float64)
    out = {}
    for d in days:
        s = rolling_sum(x, _steps(24.0 * d, step_s))
        if exclude_current:
            s = np.concatenate(([np.nan], s[:-1]))
        out[d] = s
    return out


@dataclass(frozen=True)
class RainEvent:
    start: float  # start of the first wet step (UTC s)
    end: float  # end of the last wet step
    duration_h: float
    total_mm: float
    mean_intensity_mm_h: float  # total / duration
    peak_intensity_mm_h: float  # wettest single step, as mm/h
    missing_steps: int  # steps without data inside the event (counted as dry)


def rain_events(
    step_start: np.ndarray,
    step_mm: np.ndarray,
    step_s: float,
    *,
    dry_gap_h: float = 6.0,
    wet_mm: float = 0.0,
    min_total_mm: float = 0.0,
) -> list[RainEvent]:
    """Events: runs of wet steps (> ``wet_mm``) separated by less than ``dry_gap_h`` of dry steps."""
    t = np.asarray(step_start, dtype=np.float64)
    x = np.asarray(step_mm, dtype=np.float64)
    if len(t) != len(x):
        raise ConfigError("rain step times and amounts differ in length", fix="pass matching arrays")
    if not dry_gap_h > 0:
        raise ConfigError(f"rain dry gap {dry_gap_h} h must be positive", fix="e.g. 6 h")
    wet = np.flatnonzero(np.isfinite(x) & (x > wet_mm))
    if not len(wet):
        return []
    gap_steps = dry_gap_h * 3600.0 / step_s
    # a new event starts where the dry run between consecutive wet steps reaches the gap
    breaks = np.flatnonzero(np.diff(wet) - 1 >= gap_steps - 1e-9) + 1
    events = []
    for run in np.split(wet, breaks):
        i0, i1 = int(run[0]), int(run[-1])
        seg = x[i0 : i1 + 1]
        total = float(np.nansum(seg))
        if total < min_total_mm:
            continue
        duration_h = (t[i1] + step_s - t[i0]) / 3600.0
        events.append(
            RainEvent(
                start=float(t[i0]),
                end=float(t[i1] + step_s),
                duration_h=duration_h,
                total_mm=total,
                mean_intensity_mm_h=total / duration_h,
                peak_intensity_mm_h=float(np.nanmax(seg)) / (step_s / 3600.0),
                missing_steps=int(np.sum(~np.isfinite(seg))),
            )
        )
    return events


def summary(
    step_mm: np.ndarray,
    step_s: float,
    windows_h: Iterable[float] = DEFAULT_INTENSITY_WINDOWS_H,
    days: Iterable[int] = DEFAULT_ANTECEDENT_DAYS,
) -> dict[str, float]:
    """Values at the last step: trailing intensities (mm/h) and antecedent totals (mm)."""
    out: dict[str, float] = {}
    for w, series in intensities(step_mm, step_s, windows_h).items():
        out[f"intensity_{w:g}h_mm_h"] = float(series[-1]) if len(series) else math.nan
    for d, series in antecedent_totals(step_mm, step_s, days).items():
        out[f"antecedent_{d}d_mm"] = float(series[-1]) if len(series) else math.nan
    return out
