"""Features of the displacement forecast: the SAME pure functions for training and for the gateway.

Target: the displacement of the next step along the station's direction of motion,
``y[t] = d[t + h] - d[t]`` in mm, where ``d = sum(coef * column)`` over the ``projection`` (a unit
vector over ``disp_e_mm``/``disp_n_mm`` fitted on the training part, or ``+-1 * disp_along_mm``).

Features per step, in the declared order of ``meta["feature_names"]`` (built by ``FEATURES`` below):
velocity (mm/step along the projection), vertical velocity, rain of the step and its antecedent sums
over 3/7/30 steps (missing rain counts as 0 inside a sum; a sum with no rain data at all is NaN),
optionally groundwater level and its change, log1p of peak ground velocity, seismic event count.

The model input is a window of the last ``window`` steps, normalised with the mean/std fitted on
the TRAINING part only, NaN replaced by 0 (the training mean), laid out (batch, features, window).
``meta`` (the bundle manifest's model meta) carries everything these functions need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agent.errors import BundleSchemaError, SiteSeriesError
from agent.features.site_series import SiteSeries

RAIN_SUM_STEPS: tuple[int, ...] = (3, 7, 30)
BASE_FEATURES: tuple[str, ...] = ("velocity_mm", "rain_mm", "rain_sum_3", "rain_sum_7", "rain_sum_30")
# Optional feature -> site-series column that must have data for it to be used.
OPTIONAL_FEATURES: dict[str, str] = {
    "velocity_up_mm": "disp_u_mm",
    "groundwater_m": "groundwater_m",
    "groundwater_change_m": "groundwater_m",
    "log1p_pgv": "pgv_mm_s",
    "seismic_events": "seismic_events",
}
INPUT_NAME = "window"
OUTPUT_NAMES: tuple[str, str] = ("displacement_mm", "exceed_prob")
REQUIRED_META: tuple[str, ...] = (
    "feature_names",
    "window",
    "horizon_steps",
    "projection",
    "norm_mean",
    "norm_std",
    "thresholds_mm",
    "primary_threshold_mm",
    "conformal_half_width_mm",
    "conformal_nominal",
)
STD_FLOOR = 1e-6


def along_displacement(series: SiteSeries, projection: Mapping[str, float]) -> np.ndarray:
    """d[t] = sum(coef * column[t]); NaN where any used column is NaN."""
    if not projection:
        raise BundleSchemaError("projection is empty", fix="fit it with fit_projection on the training part")
    d = np.zeros(len(series))
    for col, coef in projection.items():
        if col not in series.columns:
            raise SiteSeriesError(
                f"station {series.station!r} has no column {col!r} that the projection uses",
                fix="import the station with that column, or fit a projection for this station",
            )
        d = d + float(coef) * series.columns[col]
    return d


def fit_projection(series: SiteSeries, end: int, k: int = 10) -> dict[str, float]:
    """Direction of motion from the first ``end`` steps only (training part): no look at the test part.

    ``disp_along_mm`` when it has data (sign so that net motion is positive), else the horizontal unit
    vector from the median of the first k valid positions to the median of the last k.
    """
    part = series.slice(0, end)
    if part.has_data("disp_along_mm"):
        a = part.columns["disp_along_mm"]
        v = a[np.isfinite(a)]
        sign = 1.0 if v.size < 2 or np.median(v[-k:]) >= np.median(v[:k]) else -1.0
        return {"disp_along_mm": sign}
    e, n = part.column("disp_e_mm"), part.column("disp_n_mm")
    ok = np.isfinite(e) & np.isfinite(n)
    if ok.sum() < 2:
        raise SiteSeriesError(
            f"station {series.station!r} has fewer than 2 valid horizontal positions in its training part",
            fix="use a longer series or a larger training fraction",
        )
    ev, nv = e[ok], n[ok]
    de = float(np.median(ev[-k:]) - np.median(ev[:k]))
    dn = float(np.median(nv[-k:]) - np.median(nv[:k]))
    norm = math.hypot(de, dn)
    if norm < 1e-9:
        return {"disp_e_mm": 1.0, "disp_n_mm": 0.0}
    return {"disp_e_mm": de / norm, "disp_n_mm": dn / norm}


def _diff(x: np.ndarray, h: int = 1) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    out[h:] = x[h:] - x[:-h]
    return out


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    """Sum of the last n steps; NaN counts as 0, a window with no data at all is NaN."""
    finite = np.isfinite(x)
    c = np.concatenate([[0.0], np.cumsum(np.where(finite, x, 0.0))])
    k = np.concatenate([[0], np.cumsum(finite)])
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - n, 0)
    s = c[idx] - c[lo]
    cnt = k[idx] - k[lo]
    return np.where(cnt > 0, s, np.nan)


def _col(name: str) -> Callable[[SiteSeries, np.ndarray], np.ndarray]:
    return lambda s, d: s.column(name)


def _rain_sum(n: int) -> Callable[[SiteSeries, np.ndarray], np.ndarray]:
    return lambda s, d: _rolling_sum(s.column("rain_mm"), n)


def _log1p_pgv(s: SiteSeries, d: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(s.column("pgv_mm_s"), 0.0, None))


# Feature name -> builder(series, along-displacement) -> column; the table IS the feature definition.
FEATURES: dict[str, Callable[[SiteSeries, np.ndarray], np.ndarray]] = {
    "velocity_mm": lambda s, d: _diff(d),
    "velocity_up_mm": lambda s, d: _diff(s.column("disp_u_mm")),
    "rain_mm": _col("rain_mm"),
    **{f"rain_sum_{n}": _rain_sum(n) for n in RAIN_SUM_STEPS},
    "groundwater_m": _col("groundwater_m"),
    "groundwater_change_m": lambda s, d: _diff(s.column("groundwater_m")),
    "log1p_pgv": _log1p_pgv,
    "seismic_events": _col("seismic_events"),
}


def select_features(series_list: Sequence[SiteSeries], min_coverage: float = 0.5) -> list[str]:
    """Base features plus each optional one whose column has >= min_coverage data in EVERY series."""
    names = list(BASE_FEATURES)
    for feat, col in OPTIONAL_FEATURES.items():
        if all(float(np.isfinite(s.column(col)).mean()) >= min_coverage for s in series_list if len(s)):
            names.append(feat)
    return names


def build_features(
    series: SiteSeries, feature_names: Sequence[str], projection: Mapping[str, float]
) -> np.ndarray:
    """Raw (un-normalised) feature matrix (T, F) in the declared order; NaN where not computable."""
    d = along_displacement(series, projection)
    cols = []
    for name in feature_names:
        builder = FEATURES.get(name)
        if builder is None:
            raise BundleSchemaError(
                f"feature {name!r} is unknown to this agent", fix=f"use features from {sorted(FEATURES)}"
            )
        cols.append(np.asarray(builder(series, d), dtype=np.float64))
    return np.stack(cols, axis=1) if cols else np.zeros((len(series), 0))


def step_target(series: SiteSeries, projection: Mapping[str, float], horizon: int = 1) -> np.ndarray:
    """y[t] = d[t + horizon] - d[t] (mm); NaN at the end and where either position is missing."""
    d = along_displacement(series, projection)
    y = np.full(d.shape, np.nan)
    y[:-horizon] = d[horizon:] - d[:-horizon]
    return y


def fit_normalisation(rows: np.ndarray) -> tuple[list[float], list[float]]:
    """NaN-aware per-feature mean and std of the given (training) rows; std floored, all-NaN -> (0, 1)."""
    mean, std = [], []
    for j in range(rows.shape[1]):
        v = rows[:, j][np.isfinite(rows[:, j])]
        mean.append(float(v.mean()) if v.size else 0.0)
        std.append(max(float(v.std()), STD_FLOOR) if v.size > 1 else 1.0)
    return mean, std


def window_at(
    features: np.ndarray, end: int, window: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[np.ndarray, float]:
    """Normalised window (F, W) ending at step ``end`` (inclusive) and its completeness.

    Completeness = fraction of finite values of the first feature (velocity) in the window. Steps
    before the series start count as missing.
    """
    lo = end - window + 1
    raw = np.full((window, features.shape[1]), np.nan)
    src_lo = max(lo, 0)
    raw[src_lo - lo :] = features[src_lo : end + 1]
    completeness = float(np.isfinite(raw[:, 0]).mean()) if raw.shape[1] else 0.0
    z = (raw - np.asarray(mean)) / np.asarray(std)
    z = np.where(np.isfinite(z), z, 0.0)
    return z.T.astype(np.float32), completeness


def check_meta(meta: Mapping[str, Any]) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise BundleSchemaError(
            f"displacement model meta lacks {missing}",
            fix="re-export the bundle with this version of agent-export",
        )
    f = len(meta["feature_names"])
    if len(meta["norm_mean"]) != f or len(meta["norm_std"]) != f:
        raise BundleSchemaError(
            "displacement meta: normalisation length differs from feature_names", fix="re-export the bundle"
        )


def projection_for(meta: Mapping[str, Any], station: str) -> dict[str, float]:
    """The station's own direction of motion when the run fitted one, else the model's default."""
    per_station = meta.get("station_projections") or {}
    chosen = per_station.get(station, meta["projection"])
    return {str(k): float(v) for k, v in chosen.items()}


def build_features_for(series: SiteSeries, meta: Mapping[str, Any]) -> np.ndarray:
    """``build_features`` with the feature order and the station's projection taken from the model meta."""
    check_meta(meta)
    return build_features(series, meta["feature_names"], projection_for(meta, series.station))


def latest_window(
    series: SiteSeries, meta: Mapping[str, Any], projection: Mapping[str, float] | None = None
) -> tuple[np.ndarray, float]:
    """Model input (1, F, W) float32 for the latest step of ``series``, and its completeness.

    The projection defaults to ``meta["station_projections"][series.station]``, else ``meta["projection"]``.
    """
    check_meta(meta)
    feats = build_features(series, meta["feature_names"], projection or projection_for(meta, series.station))
    if len(series) == 0:
        raise SiteSeriesError("site series is empty", fix="wait until the store holds at least one step")
    x, completeness = window_at(
        feats, len(series) - 1, int(meta["window"]), meta["norm_mean"], meta["norm_std"]
    )
    return x[None], completeness
