"""Rain predictors shared by calibration (offline, one row per day) and the live rule (hourly steps).

The names are a contract between ``agent-export calibrate rain`` and the ``rainfall.calibrated`` rule:

- ``rain_Nd``: total of the current day and the N-1 days before it (mm); ``rain_1d`` is the day's total.
- ``ante_Nd``: total of the N days *before* the current day (antecedent rain, mm).
- ``rain_Nh``: the N-hour rolling total (mm). In the day table it is the day's maximum of the rolling
  total (windows ending inside the day); live it is the rolling total ending now. A day is a warning day
  in calibration exactly when the live value crosses the threshold at some time of that day.

A "day" starts at ``day_offset_h`` hours after 00:00 UTC (a gauge read at 07:00 local time in
UTC-3 has ``day_offset_h = 10``). Live day totals are running totals of the current day, so they only
grow through the day, as the day's final total (the calibration's value) does. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

DAY_WINDOWS: tuple[int, ...] = (1, 2, 3, 7, 14)
HOUR_WINDOWS: tuple[int, ...] = (1, 3, 6, 12, 24)
HOUR_S = 3600.0
DAY_S = 86400.0
# How far back the live predictor history goes (the longest hold after rain stops it can serve), hours.
HISTORY_H = 24


def day_predictor_names() -> list[str]:
    return [f"rain_{n}d" for n in DAY_WINDOWS] + [f"ante_{n}d" for n in DAY_WINDOWS]


def hour_predictor_names() -> list[str]:
    return [f"rain_{n}h" for n in HOUR_WINDOWS]


def daily_predictors(day_mm: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Per-day predictor columns from a regular series of day totals (NaN = missing day).

    A predictor is NaN when any day of its window is missing or lies before the record (never filled)."""
    x = np.asarray(day_mm, dtype=np.float64)
    out: dict[str, NDArray[np.float64]] = {}
    for n in DAY_WINDOWS:
        total = _trailing_sum(x, n)
        out[f"rain_{n}d"] = total
        out[f"ante_{n}d"] = np.concatenate(([np.nan], _trailing_sum(x, n)[:-1])) if x.size else total
    return out


def hourly_day_maxima(
    hour_mm: NDArray[np.float64], hours_per_day: int = 24
) -> dict[str, NDArray[np.float64]]:
    """Per-day maxima of the N-hour rolling totals from a regular hourly series that starts at a day start
    and holds whole days. A day with any window touching a missing hour gets NaN for that N."""
    x = np.asarray(hour_mm, dtype=np.float64)
    n_days = x.size // hours_per_day
    out: dict[str, NDArray[np.float64]] = {}
    for n in HOUR_WINDOWS:
        roll = _trailing_sum(x, n)[: n_days * hours_per_day].reshape(n_days, hours_per_day)
        bad = ~np.isfinite(roll).all(axis=1)
        days = np.where(bad, np.nan, np.nanmax(np.where(np.isfinite(roll), roll, -np.inf), axis=1))
        out[f"rain_{n}h"] = days.astype(np.float64)
    return out


def _trailing_sum(x: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    out = np.full(x.size, np.nan)
    if x.size < n:
        return out
    finite = np.isfinite(x)
    c = np.concatenate(([0.0], np.cumsum(np.where(finite, x, 0.0))))
    bad = np.concatenate(([0], np.cumsum(~finite)))
    sums = c[n:] - c[:-n]
    nbad = bad[n:] - bad[:-n]
    out[n - 1 :] = np.where(nbad == 0, sums, np.nan)
    return out


@dataclass(frozen=True, slots=True)
class LivePredictors:
    """Predictor values now and over the last hours (for the hold after rain stops)."""

    now: dict[str, float]
    times: NDArray[np.float64]  # evaluation times of the history, ascending, the last is ``now``
    history: dict[str, NDArray[np.float64]]


def _at(
    start: NDArray[np.float64], mm: NDArray[np.float64], x: float, day_offset_h: float
) -> dict[str, float]:
    """Predictors at time ``x`` from hourly steps starting at ``start`` (NaN = missing hour)."""
    keep = start < x - 1e-6
    t, v = start[keep], mm[keep]
    offset = day_offset_h * HOUR_S
    day = np.floor((t - offset) / DAY_S)  # the day an hour belongs to: the day of its start
    today = math.floor((x - offset) / DAY_S - 1e-9)  # at 00:00 exactly, the day that just ended
    first = float(t[0]) if t.size else math.inf
    ceil_hour = math.ceil(x / HOUR_S - 1e-9) * HOUR_S
    out: dict[str, float] = {}
    for n in HOUR_WINDOWS:
        lo = ceil_hour - n * HOUR_S
        inside = t >= lo - 1e-6
        covered = first <= lo + 1e-6 and bool(np.isfinite(v[inside]).all())
        out[f"rain_{n}h"] = float(np.sum(v[inside])) if covered else math.nan
    for n in DAY_WINDOWS:
        for name, d_lo, d_hi in ((f"rain_{n}d", today - n + 1, today), (f"ante_{n}d", today - n, today - 1)):
            inside = (day >= d_lo) & (day <= d_hi)
            covered = first <= d_lo * DAY_S + offset + 1e-6 and bool(np.isfinite(v[inside]).all())
            out[name] = float(np.sum(v[inside])) if covered else math.nan
    return out


def live_predictors(
    step_start: NDArray[np.float64],
    mm: NDArray[np.float64],
    present: NDArray[np.bool_],
    now: float,
    day_offset_h: float = 0.0,
    history_h: int = HISTORY_H,
) -> LivePredictors:
    """Every predictor at ``now`` and at each whole hour of the last ``history_h`` hours.

    ``mm`` is the rain of the hour starting at ``step_start`` (regular hourly steps); an hour without any
    gauge report (``present`` false) is missing, except the hour in progress, which counts what it has.
    A predictor whose window holds a missing hour, or reaches before the record, is NaN: the rule
    reports it as no data (never filled)."""
    t = np.asarray(step_start, dtype=np.float64)
    v = np.where(np.asarray(present, dtype=bool), np.nan_to_num(np.asarray(mm, dtype=np.float64)), np.nan)
    current = (t <= now) & (t + HOUR_S > now)
    v[current] = np.nan_to_num(v[current])
    top = math.floor(now / HOUR_S) * HOUR_S
    times = [top - k * HOUR_S for k in range(history_h, -1, -1)]
    times = [x for x in times if x < now - 1e-6] + [now]
    rows = [_at(t, v, x, day_offset_h) for x in times]
    history = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in rows[-1]}
    return LivePredictors(rows[-1], np.array(times, dtype=np.float64), history)


def held_value(times: NDArray[np.float64], values: NDArray[np.float64], now: float, hold_s: float) -> float:
    """The highest finite value over ``[now - hold_s, now]`` (NaN when none is finite)."""
    sel = (times >= now - hold_s - 1e-6) & (times <= now + 1e-6) & np.isfinite(values)
    return float(values[sel].max()) if sel.any() else math.nan


def logistic_probability(intercept: float, coef: Mapping[str, float], values: Mapping[str, float]) -> float:
    """P = 1 / (1 + exp(-(b0 + sum b_i x_i))) on raw predictor values (NaN when one is missing)."""
    z = intercept
    for name, b in coef.items():
        x = values.get(name, math.nan)
        if not math.isfinite(x):
            return math.nan
        z += b * x
    if z < -700:
        return 0.0
    return 1.0 / (1.0 + math.exp(-z))
