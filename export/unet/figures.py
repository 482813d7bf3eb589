"""Pictures a person would look at, from a cross-validated image run (docs/riskmap.md).

* ``side_by_side``: for images of the run, image | hand-drawn mask | prediction of the fold model that
  never saw the image (out-of-fold), thresholded at that fold's threshold, with the per-image Dice.
* ``riskmap_demo``: fold k's shipped network exported exactly like a release (re-parameterised, ONNX,
  Q/DQ INT8, signed with the given key) into a bundle, loaded by the gateway's ModelManager and run by
  the daemon's RiskMapper over a georeferenced GeoTIFF mosaic of fold k's test images (converted to
  the site raster ``.npz`` the gateway reads); writes the stitched map PNG and a JSON with its Dice.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from export.unet.evaluate import predict_unet
from export.unet.metrics import binary_metrics, json_safe
from export.unet.run import UnetRun, normalise_batch

log = logging.getLogger(__name__)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rgb(x_raw: np.ndarray, channels: list[str]) -> np.ndarray:
    idx = [channels.index(c) for c in ("red", "green", "blue")]
    return np.clip(np.moveaxis(x_raw[idx], 0, -1), 0, 1)


def side_by_side(run: UnetRun, out: Path, images: list[str] | None = None, limit: int = 6) -> dict[str, Any]:
    """Out-of-fold panels (image, mask, prediction) for ``images`` (default: the first of each fold)."""
    plt = _plt()
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


def riskmap_demo(run_dir: Path, fold: int, sign_key: Path, public_key: Path, out: Path) -> dict[str, Any]:
    from agent.inference.manager import ModelManager
    from agent.inference.settings import InferenceSettings
    from agent.riskmap import RiskMapper, load_site_raster
    from export.bundle import build_bundle
    from export.raster.bijie import write_bijie_geotiff
    from export.raster.geotiff import geotiff_to_site_raster, read_layers
    from export.unet.run import load_unet_run, open_run

    run = open_run(run_dir)
    fd = run.doc["cv"]["folds"][fold]
    imp = run.doc["import"]
    root = Path(run.doc["source"].split(": ", 1)[1])
    out.mkdir(parents=True, exist_ok=True)
    tif, npz = out / f"bijie_fold{fold}_mosaic.tif", out / f"bijie_fold{fold}_site.npz"
    images = list(fd["test_images"])
    write_bijie_geotiff(root, images, tif, size=int(imp["size"]), cols=3)
    geotiff_to_site_raster(tif, npz)
    bundle = build_bundle(
        [load_unet_run(run_dir, fold=fold)], sign_key, out / f"bundle_fold{fold}", force=True
    )
    mgr = ModelManager(InferenceSettings(bundle_dir=bundle, public_key=public_key, state_dir=out / "state"))
    mgr.start()
    mapper = RiskMapper(load_site_raster(npz, run.channels), mgr)
    res = mapper.run(0.0, 0.0, now=0.0)
    if res is None:
        raise RuntimeError(f"risk map failed: {mapper.last_reason}")
    layers, _ = read_layers(tif)
    mask = layers["mask"] > 0
    thr = res.spatial.probability_threshold
    metrics = json_safe(binary_metrics(res.probability, mask, thr))
    plt = _plt()
    rgb = np.clip(np.stack([layers[c] for c in ("red", "green", "blue")], axis=-1), 0, 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 2.9), dpi=100)
    axes[0].imshow(rgb)
    axes[0].contour(mask, levels=[0.5], colors="lime", linewidths=0.7)
    axes[0].set_title(f"GeoTIFF mosaic of fold {fold}'s test images {images} (mask: green)", fontsize=8)
    axes[1].imshow(res.probability, cmap="YlOrRd", vmin=0, vmax=1)
    axes[1].contour(res.probability >= thr, levels=[0.5], colors="blue", linewidths=0.7)
    axes[1].contour(mask, levels=[0.5], colors="lime", linewidths=0.7)
    axes[1].set_title(
        f"gateway risk map ({mgr.mode}, {res.summary['tiles']} tiles stitched): Dice {metrics['dice']}",
        fontsize=8,
    )
    for a in axes:
        a.set_axis_off()
    fig.tight_layout()
    png = out / f"bijie_fold{fold}_riskmap.png"
    fig.savefig(png)
    plt.close(fig)
    manifest = json.loads((bundle / "manifest.json").read_text())
    acc = manifest["models"][0]["accuracy"]
    summary = {
        "fold": fold,
        "images": images,
        "geotiff": str(tif),
        "site_raster": str(npz),
        "bundle": str(bundle),
        "mode": mgr.mode,
        "variant_loaded": mgr.status().get("variants", {}),
        "riskmap_summary": res.summary,
        "stitched_metrics": metrics,
        "bundle_accuracy": acc,
        "png": str(png),
    }
    (out / f"bijie_fold{fold}_riskmap.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
