"""Honest metrics: MAE/RMSE, warning precision/recall/F1/F2, error near the threshold, split conformal.

Warnings: a step is a warning when its (predicted or observed) next-step displacement exceeds the
primary threshold. Precision/recall are 0.0 when undefined (no predicted / no observed warnings); the
counts ``tp``, ``fp``, ``fn`` are reported beside them so that a 0.0 can be read correctly.
``mae_near_threshold_mm`` is the MAE on test steps whose observed displacement lies within
[0.5 T, 1.5 T], the regime where the warning decision is made (seed 000's "precision near the
threshold").
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)


def conformal_half_width(abs_residuals: np.ndarray, nominal: float) -> float:
    """Split-conformal half-width: the ceil((n + 1) * nominal)-th smallest calibration |residual|.

    With too few calibration points for the finite-sample rank (k > n) the largest residual is used
    and a warning is logged: the interval is then NOT guaranteed to reach the nominal coverage.
    """
    r = np.sort(np.asarray(abs_residuals, dtype=np.float64)[np.isfinite(abs_residuals)])
    if r.size == 0:
        return float("nan")
    k = math.ceil((r.size + 1) * nominal)
    if k > r.size:
        log.warning(
            "only %d calibration residuals: %.0f%% conformal rank unavailable, using max",
            r.size,
            nominal * 100,
        )
        k = r.size
    return float(r[k - 1])


def f_beta(precision: float, recall: float, beta: float) -> float:
    b2 = beta * beta
    den = b2 * precision + recall
    return float((1 + b2) * precision * recall / den) if den > 0 else 0.0


def warning_scores(observed: np.ndarray, predicted_warn: np.ndarray, threshold: float) -> dict[str, float]:
    obs = observed > threshold
    tp = int(np.sum(obs & predicted_warn))
    fp = int(np.sum(~obs & predicted_warn))
    fn = int(np.sum(obs & ~predicted_warn))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": f_beta(precision, recall, 1.0),
        "f2": f_beta(precision, recall, 2.0),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def model_metrics(
    y: np.ndarray, pred: np.ndarray, threshold: float, half_width: float, nominal: float
) -> dict[str, float]:
    """Every metric of one model on one part; ``y`` and ``pred`` in mm."""
    err = pred - y
    near = (y >= 0.5 * threshold) & (y <= 1.5 * threshold)
    out: dict[str, float] = {
        "mae_mm": float(np.mean(np.abs(err))) if err.size else float("nan"),
        "rmse_mm": float(np.sqrt(np.mean(err**2))) if err.size else float("nan"),
        **warning_scores(y, pred > threshold, threshold),
        "mae_near_threshold_mm": float(np.mean(np.abs(err[near]))) if near.any() else float("nan"),
        "near_threshold_steps": int(near.sum()),
        "interval_coverage": float(np.mean(np.abs(err) <= half_width))
        if err.size and math.isfinite(half_width)
        else float("nan"),
        "interval_nominal": float(nominal),
        "interval_half_width_mm": float(half_width),
    }
    return out


PROB_CUTOFF_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 .. 0.95


def best_probability_cutoff(y: np.ndarray, prob: np.ndarray, threshold: float, beta: float = 2.0) -> float:
    """The cutoff on P(exceed) that maximises F-beta on the given (calibration) part.

    Ties go to the highest cutoff (fewer false alarms). Without any observed exceedance: 0.5.
    """
    if not np.any(y > threshold):
        return 0.5
    best, best_f = 0.5, -1.0
    for c in PROB_CUTOFF_GRID:
        s = warning_scores(y, prob >= c, threshold)
        f = f_beta(s["precision"], s["recall"], beta)
        if f >= best_f:
            best, best_f = c, f
    return float(best)


def probability_metrics(
    y: np.ndarray, prob: np.ndarray, threshold: float, cutoff: float = 0.5
) -> dict[str, float]:
    """Warnings from the auxiliary head, P(exceed primary threshold) >= cutoff, plus the Brier score."""
    s = warning_scores(y, prob >= cutoff, threshold)
    brier = float(np.mean((prob - (y > threshold)) ** 2)) if y.size else float("nan")
    return {
        "prob_cutoff": float(cutoff),
        "prob_precision": s["precision"],
        "prob_recall": s["recall"],
        "prob_f1": s["f1"],
        "prob_f2": s["f2"],
        "prob_brier": brier,
    }
