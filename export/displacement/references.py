"""Reference models, trained and evaluated on the same windows as the CNN.

- ``persistence``: next-step displacement = the last observed velocity (the last window step; a
  missing last velocity falls back to the training mean velocity through the normalisation);
- ``moving_average``: the mean velocity over the window's observed steps;
- ``gbr``: scikit-learn GradientBoostingRegressor on the flattened normalised window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

VELOCITY = "velocity_mm"


def _velocity(x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    j = list(meta["feature_names"]).index(VELOCITY)
    return np.asarray(x[:, j, :], dtype=np.float64) * float(meta["norm_std"][j]) + float(meta["norm_mean"][j])


def persistence(x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    return _velocity(x, meta)[:, -1]


def moving_average(x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    return _velocity(x, meta).mean(axis=1)


def fit_gbr(x: np.ndarray, y: np.ndarray, seed: int, n_estimators: int = 150) -> GradientBoostingRegressor:
    model = GradientBoostingRegressor(
        n_estimators=n_estimators,
        max_depth=3,
        learning_rate=0.05,
        subsample=0.8,
        loss="huber",
        random_state=seed,
    )
    model.fit(x.reshape(x.shape[0], -1), y)
    return model


def predict_gbr(model: GradientBoostingRegressor, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x.reshape(x.shape[0], -1)), dtype=np.float64)
