"""Score every model of a run on a split; the `evaluate unet` report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.unet.metrics import binary_metrics, json_safe
from export.unet.model import VARIANTS
from export.unet.references import (
    index_score,
    load_random_forest,
    lsi_score,
    predict_random_forest,
    reference_names,
)
from export.unet.run import UnetRun, open_run

UNETS = ("enhanced", "plain", "hybrid")


def model_names(channels: list[str]) -> tuple[str, ...]:
    """Every model a run of this channel stack scores: the three U-Net variants, then the references."""
    return (*UNETS, *reference_names(channels))


@torch.no_grad()
def predict_unet(net: torch.nn.Module, x: np.ndarray, batch: int = 8) -> np.ndarray:
    """(N, 7, H, W) normalised -> (N, H, W) probability, eval mode."""
    net.eval()
    out = []
    for i in range(0, x.shape[0], batch):
        logits = net(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])))
        out.append(torch.sigmoid(logits)[:, 0].numpy())
    if not out:
        return np.zeros((0, *x.shape[2:]), np.float32)
    return np.concatenate(out).astype(np.float32)


def model_scores(
    run: UnetRun,
    x_raw: np.ndarray,
    x: np.ndarray,
    nets: dict[str, torch.nn.Module] | None = None,
    fold: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-model score maps (N, H, W) for tiles; ``nets`` overrides loading the U-Nets from disk.

    ``fold`` k (CV runs): the models trained without fold k's images.
    """
    scores: dict[str, np.ndarray] = {}
    for variant in VARIANTS:
        net = nets[variant] if nets is not None and variant in nets else run.model(variant, fold)
        scores[variant] = predict_unet(net, x)
    rf_path = run.model_dir(fold) / "random_forest.joblib"
    scores["random_forest"] = predict_random_forest(load_random_forest(rf_path), x)
    refs = reference_names(run.channels)
    if "index_threshold" in refs:
        scores["index_threshold"] = index_score(x_raw, run.channels)
    if "lsi" in refs:
        scores["lsi"] = lsi_score(x_raw, run.channels)
    return scores


def evaluate_run(run_dir: Path, split: str = "test") -> dict[str, Any]:
    run = open_run(run_dir)
    if "cv" in run.doc:
        from export.unet.cv_eval import evaluate_cv

        return evaluate_cv(run)
    x_raw, x, y = run.load_split(split)
    scores = model_scores(run, x_raw, x)
    thresholds = run.doc["thresholds"]
    models = {
        name: json_safe(binary_metrics(scores[name], y, float(thresholds[name])))
        for name in model_names(run.channels)
    }
    return {
        "test_tiles" if split == "test" else f"{split}_tiles": int(x.shape[0]),
        "positive_fraction": round(float(y.mean()), 6) if y.size else None,
        "synthetic": bool(run.doc.get("synthetic", False)),
        "thresholds": {k: round(float(v), 6) for k, v in thresholds.items()},
        "models": models,
    }


def summary_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for name, entry in report["models"].items():
        m = entry.get("pooled", entry)
        rows.append(
            (
                name,
                *(
                    "n/a" if m[k] is None else f"{m[k]:.3f}"
                    for k in ("dice", "iou", "precision", "recall", "auc")
                ),
            )
        )
    return rows
