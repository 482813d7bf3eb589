"""Reference models and rules, evaluated on the same windows as the CNNs. Every forecast is (N, H): the
cumulative displacement over each horizon h (steps).

- ``persistence``: h x the last observed velocity (a missing last velocity is the training mean);
- ``moving_average``: h x the mean velocity over the window;
- ``linear_trend``: h x the least-squares slope of the window's positions (cumulated velocities);
- ``gbr``: one scikit-learn GradientBoostingRegressor per horizon on the flattened normalised window;
- rules (warnings only, no displacement forecast), the engine's kinematic rules on the window:
  ``velocity_threshold`` warns when the 3-step velocity at the origin exceeds the alarm rate V;
  ``inverse_velocity`` (Fukuzono) fits 1/v of the 3-step smoothed velocity over the last 7 steps and
  warns when the line reaches 1/V within the warning horizon (or v > V already).

The closed-form references are also ``torch`` modules (``ReferenceModule``) so that a bundle can carry
one as a tiny ONNX graph when it is the chosen model; the manifest then declares
``evaluator: closed_form`` and the gateway evaluates the same formula in numpy
(``agent.features.forecast_dist.closed_form_forecast``): an INT8 variant of a 14-tap average clips
velocities outside its calibration range, exactly when a warning matters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingRegressor
from torch import nn

from agent.features import forecast_dist as fdist
from agent.features.forecast_dist import VELOCITY, horizons_of, window_velocity

CLOSED_FORM = fdist.CLOSED_FORM
RULES = ("velocity_threshold", "inverse_velocity")
RULE_SMOOTH = 3
RULE_FIT = 7


def closed_form(kind: str, x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    return fdist.closed_form_forecast(kind, x, meta)


class ReferenceModule(nn.Module):
    """A closed-form reference as a graph: window (N, F, W) -> displacement_mm (N, H)."""

    std: torch.Tensor
    mean: torch.Tensor
    weights: torch.Tensor
    horizons: torch.Tensor

    def __init__(self, kind: str, meta: Mapping[str, Any]) -> None:
        super().__init__()
        j = list(meta["feature_names"]).index(VELOCITY)
        w = int(meta["window"])
        self.j = j
        self.register_buffer("std", torch.tensor(float(meta["norm_std"][j])))
        self.register_buffer("mean", torch.tensor(float(meta["norm_mean"][j])))
        self.register_buffer(
            "weights", torch.tensor(fdist.closed_form_weights(kind, w), dtype=torch.float32)[:, None]
        )
        self.register_buffer("horizons", torch.tensor([float(h) for h in horizons_of(meta)])[None, :])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x[:, self.j, :] * self.std + self.mean
        return (v @ self.weights) * self.horizons


def fit_gbr(
    x: np.ndarray, y: np.ndarray, seed: int, n_estimators: int = 150
) -> list[GradientBoostingRegressor | None]:
    """One model per horizon (column of y), each on the windows where that target exists."""
    flat = x.reshape(x.shape[0], -1)
    y2 = y.reshape(y.shape[0], -1)
    models: list[GradientBoostingRegressor | None] = []
    for col in y2.T:
        ok = np.isfinite(col)
        if ok.sum() < 10:
            models.append(None)
            continue
        m = GradientBoostingRegressor(
            n_estimators=n_estimators,
            max_depth=3,
            learning_rate=0.05,
            subsample=0.8,
            loss="huber",
            random_state=seed,
        )
        m.fit(flat[ok], col[ok])
        models.append(m)
    return models


def predict_gbr(models: Any, x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1)
    ms = models if isinstance(models, list) else [models]
    cols = [
        np.full(x.shape[0], np.nan) if m is None else np.asarray(m.predict(flat), dtype=np.float64)
        for m in ms
    ]
    return np.stack(cols, axis=1) if cols else np.zeros((x.shape[0], 0))


def _smoothed(v: np.ndarray) -> np.ndarray:
    k = RULE_SMOOTH
    c = np.cumsum(np.concatenate([np.zeros((v.shape[0], 1)), v], axis=1), axis=1)
    return (c[:, k:] - c[:, :-k]) / k


def rule_warnings(
    kind: str, x: np.ndarray, meta: Mapping[str, Any], warnings: Sequence[Mapping[str, Any]]
) -> np.ndarray:
    """0/1 warnings (N,) of a kinematic rule; ``warnings[i]`` is window i's station warning settings."""
    v = _smoothed(window_velocity(x, meta))
    out = np.zeros(v.shape[0])
    for i, wset in enumerate(warnings):
        alarm = float(wset["velocity_mm_per_step"])
        now = v[i, -1]
        if now > alarm:
            out[i] = 1.0
            continue
        if kind == "velocity_threshold":
            continue
        tail = v[i, -RULE_FIT:]
        if np.any(tail <= 0):
            continue
        t = np.arange(tail.size, dtype=np.float64)
        a, b = np.polyfit(t, 1.0 / tail, 1)
        if a >= 0:
            continue
        t_hit = (1.0 / alarm - b) / a - (tail.size - 1)
        if 0 < t_hit <= int(wset["horizon_steps"]):
            out[i] = 1.0
    return out
