"""Chronological splits and model-input windows, built ONLY with agent.features.displacement.

Per station of n steps: the training part is the first ``floor(n * train_fraction)`` steps; its last
``cal_fraction`` is the conformal calibration (validation) part; the rest of the series is the test
part. A window belongs to the part of its TARGET step (t + horizon), so every test target is strictly
after every training target. The projection (direction of motion) of each station, the feature
normalisation and the warning thresholds are fitted on the training part only (normalisation on the
fit part, thresholds on fit + calibration targets). Windows with a missing target or with less than
``min_completeness`` of their velocity steps present are dropped and counted.
With ``test_from`` (a UTC time) all stations are split at that common date instead of by fraction, so
no station's training part overlaps another station's test period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.errors import TrainingError
from agent.features import displacement as fd
from agent.features.site_series import SiteSeries

DEFAULT_WINDOW = 14
DEFAULT_PERCENTILES: tuple[float, ...] = (80.0, 90.0, 95.0)
PRIMARY_PERCENTILE = 90.0
CAL_FRACTION = 0.2
MIN_COMPLETENESS = 0.7
CONFORMAL_NOMINAL = 0.9


@dataclass
class Part:
    """Windows of one part: x (N, F, W) float32; y target mm; station index; target time; target rain."""

    x: np.ndarray
    y: np.ndarray
    station: np.ndarray
    t: np.ndarray
    rain: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @staticmethod
    def concat(parts: Sequence[Part], n_features: int, window: int) -> Part:
        if not parts:
            return Part(np.zeros((0, n_features, window), np.float32), *(np.zeros(0) for _ in range(4)))
        return Part(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "station", "t", "rain"))
        )

    def to_npz(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{f}": getattr(self, f) for f in ("x", "y", "station", "t", "rain")}

    @staticmethod
    def from_npz(data: Mapping[str, np.ndarray], prefix: str) -> Part:
        return Part(*(np.asarray(data[f"{prefix}_{f}"]) for f in ("x", "y", "station", "t", "rain")))


@dataclass
class Prepared:
    fit: Part
    cal: Part
    test: Part
    meta: dict[str, Any]
    stations: list[str]
    counts: dict[str, int] = field(default_factory=dict)


def station_windows(
    series: SiteSeries,
    station_index: int,
    meta: Mapping[str, Any],
    projection: Mapping[str, float],
    bounds: tuple[int, int],
    counts: dict[str, int],
) -> tuple[Part, Part, Part]:
    """(fit, cal, test) windows of one station; ``bounds`` = (fit_end, train_end) in target steps."""
    h, w = int(meta["horizon_steps"]), int(meta["window"])
    feats = fd.build_features(series, meta["feature_names"], projection)
    y = fd.step_target(series, projection, h)
    rain = series.column("rain_mm")
    buckets: list[list[int]] = [[], [], []]
    xs: dict[int, np.ndarray] = {}
    for end in range(len(series) - h):
        if not np.isfinite(y[end]):
            counts["target_missing"] = counts.get("target_missing", 0) + 1
            continue
        x, completeness = fd.window_at(feats, end, w, meta["norm_mean"], meta["norm_std"])
        if completeness < float(meta["min_completeness"]):
            counts["incomplete_window"] = counts.get("incomplete_window", 0) + 1
            continue
        xs[end] = x
        target = end + h
        buckets[0 if target < bounds[0] else 1 if target < bounds[1] else 2].append(end)
    parts = []
    for ends in buckets:
        idx = np.asarray(ends, dtype=int)
        parts.append(
            Part(
                np.stack([xs[e] for e in ends]) if ends else np.zeros((0, feats.shape[1], w), np.float32),
                y[idx],
                np.full(idx.size, station_index, dtype=np.int64),
                series.times[idx + h] if idx.size else np.zeros(0),
                rain[idx + h] if idx.size else np.zeros(0),
            )
        )
    return parts[0], parts[1], parts[2]


def split_bounds(n: int, train_fraction: float, cal_fraction: float = CAL_FRACTION) -> tuple[int, int]:
    if not 0.0 < train_fraction < 1.0:
        raise TrainingError(f"train fraction {train_fraction} is not in (0, 1)", fix="use e.g. 0.7")
    train_end = int(n * train_fraction)
    return int(train_end * (1.0 - cal_fraction)), train_end


def date_bounds(series: SiteSeries, test_from: float, cal_fraction: float = CAL_FRACTION) -> tuple[int, int]:
    """Split bounds for a common calendar split: the training part is every step before ``test_from``."""
    train_end = int(np.searchsorted(series.times, test_from, side="left"))
    if not 0 < train_end < len(series):
        raise TrainingError(
            f"the split date does not fall inside {series.station}'s series",
            fix="choose a --test-from date between the series' first and last steps",
        )
    return int(train_end * (1.0 - cal_fraction)), train_end


def prepare(
    series_list: Sequence[SiteSeries],
    train_fraction: float = 0.7,
    window: int = DEFAULT_WINDOW,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    primary_percentile: float = PRIMARY_PERCENTILE,
    min_completeness: float = MIN_COMPLETENESS,
    test_from: float | None = None,
) -> Prepared:
    """Fit projection, normalisation and thresholds on the training parts; cut all windows."""
    if not series_list:
        raise TrainingError("no site series given", fix="pass at least one SITE_CSV")
    steps = {s.step for s in series_list}
    if len(steps) != 1:
        raise TrainingError(
            f"site series have different steps {sorted(steps)}", fix="train one step size at a time"
        )
    if test_from is None:
        bounds = [split_bounds(len(s), train_fraction) for s in series_list]
    else:
        bounds = [date_bounds(s, test_from) for s in series_list]
    projections = [fd.fit_projection(s, b[1]) for s, b in zip(series_list, bounds, strict=True)]
    names = fd.select_features([s.slice(0, b[1]) for s, b in zip(series_list, bounds, strict=True)])
    rows, train_y = [], []
    for s, b, p in zip(series_list, bounds, projections, strict=True):
        rows.append(fd.build_features(s.slice(0, b[0]), names, p))
        train_y.append(fd.step_target(s.slice(0, b[1]), p, 1))
    mean, std = fd.fit_normalisation(np.concatenate(rows))
    ty = np.concatenate(train_y)
    ty = ty[np.isfinite(ty)]
    if ty.size < 10:
        raise TrainingError(
            f"only {ty.size} training targets with data", fix="use longer series or a larger --train-fraction"
        )
    thresholds = [float(np.percentile(ty, q)) for q in percentiles]
    primary = float(np.percentile(ty, primary_percentile))
    stations = [s.station for s in series_list]
    meta: dict[str, Any] = {
        "feature_names": names,
        "window": window,
        "step": series_list[0].step,
        "horizon_steps": 1,
        "input_name": fd.INPUT_NAME,
        "output_names": list(fd.OUTPUT_NAMES),
        "input_layout": "NCW (batch, feature, time); last time index = latest step",
        "target": "next-step displacement along the station's direction of motion (mm)",
        "projection": projections[0],
        "station_projections": dict(zip(stations, projections, strict=True)),
        "norm_mean": mean,
        "norm_std": std,
        "thresholds_mm": thresholds,
        "threshold_percentiles": list(percentiles),
        "primary_threshold_mm": primary,
        "primary_threshold_percentile": primary_percentile,
        "min_completeness": min_completeness,
        "conformal_half_width_mm": float("nan"),
        "conformal_nominal": CONFORMAL_NOMINAL,
        "synthetic": any(s.synthetic for s in series_list),
    }
    counts: dict[str, int] = {}
    parts: list[list[Part]] = [[], [], []]
    for i, (s, b, p) in enumerate(zip(series_list, bounds, projections, strict=True)):
        for k, part in enumerate(station_windows(s, i, meta, p, b, counts)):
            parts[k].append(part)
    f = len(names)
    fit, cal, test = (Part.concat(ps, f, window) for ps in parts)
    if len(fit) < 8 or len(cal) < 2:
        raise TrainingError(
            f"too few complete windows (fit {len(fit)}, calibration {len(cal)}, test {len(test)})",
            fix="use longer series, a shorter --window or a larger --train-fraction",
        )
    return Prepared(fit, cal, test, meta, stations, counts)
