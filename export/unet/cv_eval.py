"""`evaluate unet` of a cross-validated run: per-fold and pooled metrics of every model, with spread;
``--images DIR``: the run's final models on another image/mask directory (images they never saw).

Report (JSON)::

    {"evaluation": "cross-validation" | "images", "folds": k, "images": n, "test_tiles": N,
     "positive_fraction": p, "channels": [...], "unet_variant": "enhanced", "synthetic": false,
     "models": {"unet" | "enhanced" | "plain" | "hybrid" | "random_forest" | "index_threshold" | "lsi":
                {"pooled": {dice, iou, precision, recall, auc},
                 "mean": {...}, "std": {...}, "min": {...}, "max": {...},
                 "folds": [{"fold": k, "images": [...], "tiles": n, dice, iou, precision, recall, auc}]}}}

Pooled: confusion counts summed over the folds, each fold at ITS thresholds (chosen on its training
images); AUC over the concatenated scores. ``unet`` is the variant the run ships (``config.ship``).
For ``--images`` every image is one entry of ``folds`` (mean/std: the spread over images).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from agent.errors import TrainingError
from export.unet.evaluate import model_names, model_scores
from export.unet.metrics import METRICS, binary_metrics, json_safe
from export.unet.run import UnetRun, normalise_batch


def _pooled(parts: list[tuple[np.ndarray, np.ndarray, float]]) -> dict[str, float]:
    tp = fp = fn = 0.0
    s_all, m_all = [], []
    for score, mask, thr in parts:
        s = np.asarray(score, np.float64).ravel()
        m = np.asarray(mask).ravel().astype(bool)
        ok = np.isfinite(s)
        s, m = s[ok], m[ok]
        pred = s >= thr
        tp += float(np.sum(pred & m))
        fp += float(np.sum(pred & ~m))
        fn += float(np.sum(~pred & m))
        s_all.append(s)
        m_all.append(m)
    s_cat, m_cat = np.concatenate(s_all), np.concatenate(m_all)

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    return {
        "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "iou": ratio(tp, tp + fp + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "auc": float(roc_auc_score(m_cat, s_cat)) if 0 < m_cat.sum() < m_cat.size else math.nan,
    }


def _spread(entries: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {"mean": {}, "std": {}, "min": {}, "max": {}}
    for key in METRICS:
        vals = np.array([e[key] for e in entries if e[key] is not None], dtype=np.float64)
        for stat, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
            out[stat][key] = round(float(fn(vals)), 6) if vals.size else None
    return out


def _report(
    run: UnetRun,
    groups: list[tuple[Any, list[str], dict[str, np.ndarray], np.ndarray, dict[str, float]]],
    evaluation: str,
) -> dict[str, Any]:
    """groups: (fold label, image ids, scores per model, masks, thresholds per model)."""
    names = model_names(run.channels)
    models: dict[str, Any] = {}
    for name in names:
        entries = []
        for label, images, scores, y, thr in groups:
            m = json_safe(binary_metrics(scores[name], y, float(thr[name])))
            entries.append({"fold": label, "images": images, "tiles": int(y.shape[0]), **m})
        pooled = json_safe(_pooled([(g[2][name], g[3], float(g[4][name])) for g in groups]))
        models[name] = {"pooled": pooled, **_spread(entries), "folds": entries}
    ship = run.shipped_variant
    y_all = np.concatenate([g[3].ravel() for g in groups])
    return {
        "evaluation": evaluation,
        "folds": len(groups) if evaluation == "cross-validation" else 0,
        "images": len({i for g in groups for i in g[1]}),
        "test_tiles": int(sum(g[3].shape[0] for g in groups)),
        "positive_fraction": round(float(y_all.mean()), 6),
        "channels": run.channels,
        "synthetic": bool(run.doc.get("synthetic", False)),
        "unet_variant": ship,
        "models": {"unet": models[ship], **models},
    }


def evaluate_cv(run: UnetRun) -> dict[str, Any]:
    """Every fold's models on that fold's test images (thresholds and normalisation of the fold)."""
    tiles = run.tileset()
    groups = []
    for fd in run.doc["cv"]["folds"]:
        k = int(fd["fold"])
        x_raw, y = tiles.load(list(fd["split"]["test"]))
        norm = fd["normalisation"]
        x = normalise_batch(x_raw, norm["mean"], norm["std"])
        groups.append((k, list(fd["test_images"]), model_scores(run, x_raw, x, fold=k), y, fd["thresholds"]))
    return _report(run, groups, "cross-validation")


def evaluate_images(run: UnetRun, images_dir: Path) -> dict[str, Any]:
    """The run's final models on another image/mask dir, imported exactly as the run's data was."""
    imp = run.doc.get("import", {})
    if imp.get("kind") != "bijie":
        raise TrainingError(
            f"--images needs a run trained on imported image/mask pairs (this run's data: "
            f"{run.doc.get('source', '?')})",
            fix="train on `agent-export data import bijie` tiles",
        )
    from export.raster.bijie import bijie_tiles

    records, x_raw, y = bijie_tiles(images_dir, int(imp["size"]), int(imp["tile"]), run.channels)
    seen = {r.scene for r in run.tileset().records}
    overlap = sorted({r.scene for r in records} & seen)
    x = normalise_batch(x_raw, run.mean, run.std)
    scores = model_scores(run, x_raw, x)
    groups = []
    for image in sorted({r.scene for r in records}):
        idx = np.array([i for i, r in enumerate(records) if r.scene == image])
        groups.append((image, [image], {k: v[idx] for k, v in scores.items()}, y[idx], run.doc["thresholds"]))
    report = _report(run, groups, "images")
    report["images_dir"] = str(images_dir)
    report["images_seen_in_training"] = overlap
    return report
