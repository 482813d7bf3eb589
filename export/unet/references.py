"""Reference maps beside the U-Net: a per-pixel random forest on the same channels, a colour index
(-GRVI or -NDVI) thresholded, and the LSI alone where the stack has it.

* ``random_forest``: scikit-learn RandomForestClassifier on individual pixels (the 7 normalised
  channels, no neighbourhood), trained on a seeded random sample of training pixels.
* ``index_threshold``: ``-GRVI`` (or ``-NDVI``) as the score; threshold tuned on training data only.
* ``lsi``: the LSI channel itself as the score (no training); its threshold is chosen on the
  validation split like every other model's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from agent.errors import TrainingError

# Colour/vegetation index used as a one-number reference: channel -> sign (score = sign * channel).
# Bare, freshly failed ground is less green than vegetated slopes: -GRVI / -NDVI rise on scars.
INDEX_SCORES: tuple[tuple[str, float], ...] = (("grvi", -1.0), ("ndvi", -1.0))

log = logging.getLogger(__name__)


def pixels(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N*H*W, C)."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def train_random_forest(
    x: np.ndarray, y: np.ndarray, seed: int, max_pixels: int = 30000, trees: int = 60, max_depth: int = 14
) -> RandomForestClassifier:
    feats = pixels(x)
    labels = y.reshape(-1).astype(np.uint8)
    rng = np.random.default_rng(seed)
    idx = rng.choice(feats.shape[0], size=min(max_pixels, feats.shape[0]), replace=False)
    if len(np.unique(labels[idx])) < 2:
        raise TrainingError(
            "the random-forest sample has a single class: the training tiles have no landslide pixels",
            fix="use data with labelled landslides in the training split",
        )
    rf = RandomForestClassifier(
        n_estimators=trees, max_depth=max_depth, min_samples_leaf=5, n_jobs=1, random_state=seed
    )
    rf.fit(feats[idx], labels[idx])
    return rf


def predict_random_forest(rf: RandomForestClassifier, x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) normalised tiles -> (N, H, W) probability of class 1."""
    n, _, h, w = x.shape
    if n == 0:
        return np.zeros((0, h, w), np.float32)
    prob = rf.predict_proba(pixels(x))[:, list(rf.classes_).index(1)]
    return prob.reshape(n, h, w).astype(np.float32)


def lsi_score(x_raw: np.ndarray, channels: list[str]) -> np.ndarray:
    """(N, C, H, W) raw (not normalised) tiles -> (N, H, W) LSI channel."""
    return x_raw[:, channels.index("lsi")].astype(np.float32)


def index_channel(channels: list[str]) -> tuple[str, float] | None:
    """The (channel, sign) of the colour-index reference for this stack, if it has one."""
    return next(((c, sgn) for c, sgn in INDEX_SCORES if c in channels), None)


def index_score(x_raw: np.ndarray, channels: list[str]) -> np.ndarray:
    """(N, C, H, W) raw tiles -> (N, H, W) ``sign * index`` (e.g. -GRVI); threshold tuned on training data."""
    found = index_channel(channels)
    if found is None:
        raise TrainingError(
            f"no colour index among channels {channels}", fix=f"include one of {[c for c, _ in INDEX_SCORES]}"
        )
    name, sign = found
    return (sign * x_raw[:, channels.index(name)]).astype(np.float32)


def reference_names(channels: list[str]) -> tuple[str, ...]:
    """The untrained / per-pixel references a stack supports (always the random forest)."""
    refs = ["random_forest"]
    if index_channel(channels) is not None:
        refs.append("index_threshold")
    if "lsi" in channels:
        refs.append("lsi")
    return tuple(refs)


def save_random_forest(rf: RandomForestClassifier, path: Path) -> None:
    import joblib

    joblib.dump(rf, path)


def load_random_forest(path: Path) -> RandomForestClassifier:
    import joblib

    if not path.is_file():
        raise TrainingError(f"{path} is missing", fix="retrain the run with `agent-export train unet`")
    model: RandomForestClassifier = joblib.load(path)
    return model
