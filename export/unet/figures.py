"""Pictures a person would look at, from a cross-validated image run (docs/riskmap.md).

* ``side_by_side``: for images of the run, image | hand-drawn mask | prediction of the fold model that
  never saw the image (out-of-fold), thresholded at that fold's threshold, with the per-image Dice.
The gateway risk-map demo (a fold bundle over a GeoTIFF mosaic) is export/riskmap_demo.py.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from export.unet.evaluate import predict_unet
from export.unet.metrics import binary_metrics
from export.unet.run import UnetRun, normalise_batch

log = logging.getLogger(__name__)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rgb(x_raw: np.ndarray, channels: list[str]) -> np.ndarray:
    idx = [channels.index(c) for c in ("red", "green", "blue")]
    return np.clip(np.moveaxis(x_raw[idx], 0, -1), 0, 1)


def side_by_side(run: UnetRun, out: Path, images: list[str] | None = None, limit: int = 6) -> dict[str, Any]:
    """Out-of-fold panels (image, mask, prediction) for ``images`` (default: the first of each fold)."""
    plt = pyplot()
    tiles = run.tileset()
    ship = run.shipped_variant
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float, int]] = []
    for fd in run.doc["cv"]["folds"]:
        k = int(fd["fold"])
        wanted = [i for i in fd["test_images"] if images is None or i in images]
        if images is None:
            wanted = wanted[:2]
        net = run.model(ship, k)
        for image in wanted:
            ids = [r.id for r in tiles.records if r.scene == image]
            if len(ids) != 1:
                raise ValueError(f"image {image} has {len(ids)} tiles; side_by_side needs one tile per image")
            x_raw, y = tiles.load(ids)
            norm = fd["normalisation"]
            prob = predict_unet(net, normalise_batch(x_raw, norm["mean"], norm["std"]))[0]
            rows.append((image, x_raw[0], y[0], prob, float(fd["thresholds"][ship]), k))
    rows = rows[:limit]
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)), dpi=100, squeeze=False)
    dice = {}
    for ax, (image, x_raw, y, prob, thr, k) in zip(axes, rows, strict=True):
        d = binary_metrics(prob, y, thr)["dice"]
        dice[image] = None if not np.isfinite(d) else round(float(d), 3)
        ax[0].imshow(_rgb(x_raw, run.channels))
        ax[0].set_title(f"{image} (fold {k} test)", fontsize=8)
        ax[1].imshow(y, cmap="gray", vmin=0, vmax=1)
        ax[1].set_title(f"mask ({100 * y.mean():.1f} % landslide)", fontsize=8)
        ax[2].imshow(prob, cmap="YlOrRd", vmin=0, vmax=1)
        if (prob >= thr).any():
            ax[2].contour(prob >= thr, levels=[0.5], colors="blue", linewidths=0.7)
        if y.any():
            ax[2].contour(y, levels=[0.5], colors="lime", linewidths=0.7)
        ax[2].set_title(f"{ship} U-Net, out-of-fold: Dice {dice[image]}", fontsize=8)
        for a in ax:
            a.set_axis_off()
    fig.suptitle(
        "Bijie (real): image | hand-drawn mask | P(landslide); blue: >= threshold, green: mask", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return {"png": str(out), "dice": dice}
