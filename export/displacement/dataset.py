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

Horizons (``horizons``, default 1, 3, 7 steps): ``y[:, i]`` is the cumulative displacement over
horizon i (NaN where that target is missing; a window is kept when its first-horizon target exists).
A window belongs to the part of its LAST horizon's target step, so no target of a training window
lies in the test part. The warning target per station (``meta["station_warnings"]``): K-step
velocity above V within the horizon (``agent.features.forecast_dist``); V defaults to the station's
own training history, K to 7 steps. Per-station white-noise sigma of the daily increments
(``meta["noise"]``) is estimated on the training part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.errors import TrainingError
from agent.features import displacement as fd
from agent.features import forecast_dist as fdist
from agent.features.site_series import SiteSeries

DEFAULT_WINDOW = 14
DEFAULT_PERCENTILES: tuple[float, ...] = (80.0, 90.0, 95.0)
PRIMARY_PERCENTILE = 90.0
CAL_FRACTION = 0.2
MIN_COMPLETENESS = 0.7
CONFORMAL_NOMINAL = 0.9
DEFAULT_HORIZONS: tuple[int, ...] = (1, 3, 7)
DEFAULT_ALARM_K = 7
FIELDS = ("x", "y", "station", "t", "rain", "event")


@dataclass
class Part:
    """Windows of one part: x (N, F, W) float32; y (N, H) cumulative displacement per horizon (mm);
    station index; time of the first target step (origin + 1 step); rain of that step; event (N, H):
    the station's K-step velocity exceeds V within each horizon (0/1)."""

    x: np.ndarray
    y: np.ndarray
    station: np.ndarray
    t: np.ndarray
    rain: np.ndarray
    event: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def y1(self) -> np.ndarray:
        """The first horizon's target (N,)."""
        return self.y[:, 0]

    def take(self, mask: np.ndarray) -> Part:
        return Part(*(getattr(self, f)[mask] for f in FIELDS))

    @staticmethod
    def concat(parts: Sequence[Part], n_features: int, window: int, n_horizons: int = 1) -> Part:
        if not parts:
            z = np.zeros(0)
            return Part(
                np.zeros((0, n_features, window), np.float32),
                np.zeros((0, n_horizons)),
                z,
                z,
                z,
                np.zeros((0, n_horizons)),
            )
        return Part(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))

    def to_npz(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}_{f}": getattr(self, f) for f in FIELDS}

    @staticmethod
    def from_npz(data: Mapping[str, np.ndarray], prefix: str) -> Part:
        y = np.asarray(data[f"{prefix}_y"])
        y = y[:, None] if y.ndim == 1 else y
        ev_key = f"{prefix}_event"
        event = np.asarray(data[ev_key]) if ev_key in data else np.zeros_like(y)
        station, t, rain = (np.asarray(data[f"{prefix}_{f}"]) for f in ("station", "t", "rain"))
        return Part(np.asarray(data[f"{prefix}_x"]), y, station, t, rain, event)


@dataclass
class Prepared:
    fit: Part
    cal: Part
    test: Part
    meta: dict[str, Any]
    stations: list[str]
    counts: dict[str, int] = field(default_factory=dict)


def horizon_targets(
    series: SiteSeries, projection: Mapping[str, float], horizons: Sequence[int]
) -> np.ndarray:
    """(T, H): d[t + h] - d[t] for each horizon h."""
    return np.stack([fd.step_target(series, projection, int(h)) for h in horizons], axis=1)


def event_labels(
    series: SiteSeries, projection: Mapping[str, float], warning: Mapping[str, Any], horizons: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(events (T,) bool: v_K > V at the step; labels (T, H): an event within each horizon)."""
    d = fd.along_displacement(series, projection)
    ev = fdist.alarm_events(d, int(warning["k_steps"]), float(warning["velocity_mm_per_step"]))
    return ev, np.stack([fdist.within_horizon(ev, int(h)) for h in horizons], axis=1)


def station_windows(
    series: SiteSeries,
    station_index: int,
    meta: Mapping[str, Any],
    projection: Mapping[str, float],
    bounds: tuple[int, int],
    counts: dict[str, int],
    warning: Mapping[str, Any] | None = None,
) -> tuple[Part, Part, Part]:
    """(fit, cal, test) windows of one station; ``bounds`` = (fit_end, train_end) in target steps."""
    hs = fdist.horizons_of(meta)
    h_max, w = max(hs), int(meta["window"])
    feats = fd.build_features(series, meta["feature_names"], projection)
    y = horizon_targets(series, projection, hs)
    if warning is None:
        warning = meta["station_warnings"].get(series.station) or meta["warning"]
    _ev, labels = event_labels(series, projection, warning, hs)
    rain = series.column("rain_mm")
    buckets: list[list[int]] = [[], [], []]
    xs: dict[int, np.ndarray] = {}
    for end in range(len(series) - 1):
        if not np.isfinite(y[end, 0]):
            counts["target_missing"] = counts.get("target_missing", 0) + 1
            continue
        x, completeness = fd.window_at(feats, end, w, meta["norm_mean"], meta["norm_std"])
        if completeness < float(meta["min_completeness"]):
            counts["incomplete_window"] = counts.get("incomplete_window", 0) + 1
            continue
        target = end + h_max
        if target >= bounds[1] and end + 1 < bounds[1]:
            counts["straddles_split"] = counts.get("straddles_split", 0) + 1
            continue
        xs[end] = x
        buckets[0 if target < bounds[0] else 1 if target < bounds[1] else 2].append(end)
    parts = []
    for ends in buckets:
        idx = np.asarray(ends, dtype=int)
        parts.append(
            Part(
                np.stack([xs[e] for e in ends]) if ends else np.zeros((0, feats.shape[1], w), np.float32),
                y[idx] if idx.size else np.zeros((0, len(hs))),
                np.full(idx.size, station_index, dtype=np.int64),
                series.times[idx + 1] if idx.size else np.zeros(0),
                rain[idx + 1] if idx.size else np.zeros(0),
                labels[idx].astype(np.float64) if idx.size else np.zeros((0, len(hs))),
            )
        )
    return parts[0], parts[1], parts[2]


def station_warning(
    series: SiteSeries,
    projection: Mapping[str, float],
    train_end: int,
    horizons: Sequence[int],
    k: int,
    velocity: float | None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The station's warning settings (V, K, H) and its noise estimate, from its training part only."""
    d = fd.along_displacement(series.slice(0, train_end), projection)
    noise = fdist.white_noise_sigma(d)
    derived = velocity is None
    v = fdist.default_alarm_velocity(d, k, noise["sigma_white_mm"]) if velocity is None else float(velocity)
    if not np.isfinite(v):
        raise TrainingError(
            f"station {series.station!r}: no {k}-step velocity in its training part to derive the alarm rate",
            fix="pass --alarm-velocity V (mm/step) or use a longer series",
        )
    return {
        "velocity_mm_per_step": v,
        "k_steps": int(k),
        "horizon_steps": int(max(horizons)),
        "velocity_source": "derived: max(p85 of the training K-step velocity, median + 2 noise sd)"
        if derived
        else "given",
    }, noise


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
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    alarm_k: int = DEFAULT_ALARM_K,
    alarm_velocity: float | None = None,
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
    hs = sorted({int(h) for h in horizons})
    if not hs or hs[0] < 1:
        raise TrainingError(
            f"horizons {list(horizons)} must be positive steps", fix="use e.g. --horizons 1,3,7"
        )
    warnings: dict[str, dict[str, Any]] = {}
    noise: dict[str, dict[str, float]] = {}
    for s, b, p in zip(series_list, bounds, projections, strict=True):
        warnings[s.station], noise[s.station] = station_warning(s, p, b[1], hs, alarm_k, alarm_velocity)
    vel = np.concatenate([r[:, 0] for r in rows])
    vel = vel[np.isfinite(vel)]
    scale_floor = max(0.5 * float(vel.std()) if vel.size > 1 else 0.1, 1e-3)
    thresholds = [float(np.percentile(ty, q)) for q in percentiles]
    primary = float(np.percentile(ty, primary_percentile))
    stations = [s.station for s in series_list]
    meta: dict[str, Any] = {
        "feature_names": names,
        "window": window,
        "step": series_list[0].step,
        "horizon_steps": hs[0],
        "horizons_steps": hs,
        "input_name": fd.INPUT_NAME,
        "output_names": list(fd.OUTPUT_NAMES),
        "input_layout": "NCW (batch, feature, time); last time index = latest step",
        "target": "cumulative displacement over each horizon along the station's direction of motion (mm)",
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
        "scale_floor_mm": scale_floor,
        "warning": warnings[stations[0]],
        "station_warnings": warnings,
        "noise": noise,
        "synthetic": any(s.synthetic for s in series_list),
    }
    counts: dict[str, int] = {}
    parts: list[list[Part]] = [[], [], []]
    for i, (s, b, p) in enumerate(zip(series_list, bounds, projections, strict=True)):
        for k, part in enumerate(station_windows(s, i, meta, p, b, counts)):
            parts[k].append(part)
    f = len(names)
    fit, cal, test = (Part.concat(ps, f, window, len(hs)) for ps in parts)
    if len(fit) < 8 or len(cal) < 2:
        raise TrainingError(
            f"too few complete windows (fit {len(fit)}, calibration {len(cal)}, test {len(test)})",
            fix="use longer series, a shorter --window or a larger --train-fraction",
        )
    return Prepared(fit, cal, test, meta, stations, counts)
