"""`agent-export evaluate unet-figures`: pictures of a cross-validated image run, and the gateway demo.

* image | mask | out-of-fold prediction panels (export.unet.figures.side_by_side);
* fold k's shipped network exported exactly like a release (re-parameterised, ONNX, Q/DQ INT8, signed
  with the given key: export.bundle) into a bundle, loaded by the gateway's ModelManager and run by the
  daemon's RiskMapper over a georeferenced GeoTIFF mosaic of fold k's TEST images (converted to the
  site raster ``.npz`` the gateway reads); writes the stitched map PNG and a JSON with its Dice.

Above ``bundle`` in the export layers (it builds one), so it is not part of ``export.unet``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from agent.errors import LewsError
from export.groups import Groups
from export.unet.figures import pyplot
from export.unet.metrics import binary_metrics, json_safe


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
    plt = pyplot()
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


def unet_figures(
    run_dir: Path = typer.Argument(..., help="RUN_DIR of `train unet --folds K` on imported images."),
    out: Path = typer.Option(..., "--out", help="Directory for the PNGs, GeoTIFF, bundle and JSON."),
    fold: int = typer.Option(0, "--fold", min=0, help="Fold whose model and test images make the map."),
    images: str = typer.Option("", "--images", help="Comma-separated image ids for the side-by-side."),
    sign_key: Path = typer.Option(
        Path("bundles/demo-keys/signing.key"), "--sign-key", help="Key to sign the fold bundle with."
    ),
    public_key: Path = typer.Option(Path("bundles/demo-keys/signing.pub"), "--public-key"),
) -> None:
    """Out-of-fold side-by-side PNG + a fold bundle run by the gateway's risk map over a GeoTIFF mosaic."""
    from export.unet.figures import side_by_side
    from export.unet.run import open_run

    out.mkdir(parents=True, exist_ok=True)
    try:
        panels = side_by_side(
            open_run(run_dir), out / "bijie_side_by_side.png", [i for i in images.split(",") if i] or None
        )
        demo = riskmap_demo(run_dir, fold, sign_key, public_key, out)
    except LewsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(json.dumps({"side_by_side": panels, "riskmap": demo["stitched_metrics"], "png": demo["png"]}))


def register(groups: Groups) -> None:
    groups.evaluate.command("unet-figures")(unet_figures)
