"""Pixel metrics of a probability / score map against a binary mask: Dice, IoU, precision, recall, AUC."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score

METRICS = ("dice", "iou", "precision", "recall", "auc")


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def binary_metrics(score: np.ndarray, mask: np.ndarray, threshold: float) -> dict[str, float]:
    """Pooled over all pixels. NaN where undefined (no positives predicted/present; AUC with one class)."""
    s = np.asarray(score, dtype=np.float64).ravel()
    m = np.asarray(mask).ravel().astype(bool)
    finite = np.isfinite(s)
    s, m = s[finite], m[finite]
    pred = s >= threshold
    tp = float(np.sum(pred & m))
    fp = float(np.sum(pred & ~m))
    fn = float(np.sum(~pred & m))
    auc = float(roc_auc_score(m, s)) if 0 < m.sum() < m.size else math.nan
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "auc": auc,
    }


def best_threshold(score: np.ndarray, mask: np.ndarray, candidates: np.ndarray | None = None) -> float:
    """The threshold that maximises Dice on (validation) pixels; 0.5 if no positives exist."""
    s = np.asarray(score, dtype=np.float64).ravel()
    m = np.asarray(mask).ravel().astype(bool)
    finite = np.isfinite(s)
    s, m = s[finite], m[finite]
    if not m.any():
        return 0.5
    if candidates is None:
        candidates = np.unique(np.quantile(s, np.linspace(0.05, 0.995, 80)))
    best_t, best_d = 0.5, -1.0
    for t in candidates:
        pred = s >= t
        tp = np.sum(pred & m)
        den = 2 * tp + np.sum(pred & ~m) + np.sum(~pred & m)
        d = 2 * tp / den if den else 0.0
        if d > best_d:
            best_t, best_d = float(t), float(d)
    return best_t


def json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if not math.isfinite(v) else round(float(v), 6)) for k, v in metrics.items()}
