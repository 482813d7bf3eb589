"""CLI: `data synth scenes`, `train unet`, `evaluate unet`, `predict unet` (registered into agent-export)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from agent.errors import LewsError
from export.groups import Groups


def _fail(exc: LewsError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


def synth_scenes(
    out: Path = typer.Option(..., "--out", help="Directory to write the SYNTHETIC tile data dir into."),
    count: int = typer.Option(64, "--count", min=1, help="Number of 128 px tiles (scenes of 2x2 tiles)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    geotiff: int = typer.Option(
        0, "--geotiff", min=0, help="Also write one SYNTHETIC scene of this many px as GeoTIFF."
    ),
) -> None:
    """Write SYNTHETIC landslide scenes as tiles (tiles.json + tiles/*.npz), labelled synthetic."""
    from export.raster.synthetic import write_scene_geotiff, write_scenes

    try:
        records = write_scenes(out, count, seed)
        if geotiff:
            write_scene_geotiff(out / f"scene_{geotiff}px.tif", geotiff, seed + 10_000)
    except LewsError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {len(records)} SYNTHETIC tiles to {out}")


def import_raster(
    stacks: list[Path] = typer.Argument(..., help="Labelled GeoTIFF stacks (channel bands + 'mask' band)."),
    out: Path = typer.Option(..., "--out", help="Tile data dir to write."),
    rain_mm_h: float | None = typer.Option(None, "--rain-mm-h", help="Storm P for the LSI (default P0)."),
    rain_h: float | None = typer.Option(None, "--rain-h", help="Storm D in hours (default D0)."),
) -> None:
    """Cut labelled GeoTIFF stacks into 128 px training tiles (one scene per file)."""
    from export.raster.convert import tiles_from_geotiffs

    try:
        counts = tiles_from_geotiffs(list(stacks), out, rain_mm_h=rain_mm_h, rain_h=rain_h)
    except LewsError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {counts['tiles']} tiles to {out} ({counts})")


def import_bijie_cmd(
    root: Path = typer.Argument(..., help="Dir with images/<id>.png and masks/<id>.png (Bijie layout)."),
    out: Path = typer.Option(..., "--out", help="Tile data dir to write."),
    size: int = typer.Option(128, "--size", min=16, help="Resize every image to SIZE x SIZE px."),
    tile: int = typer.Option(128, "--tile", min=16, help="Tile size (SIZE must be a multiple)."),
    channels: str = typer.Option(
        "red,green,blue,grvi", "--channels", help="Comma-separated channels (red, green, blue, grvi, ...)."
    ),
) -> None:
    """Import Bijie image/mask PNGs as training tiles (one scene per image; raw channels)."""
    from export.raster.bijie import import_bijie

    names = [c.strip() for c in channels.split(",") if c.strip()]
    try:
        counts = import_bijie(root, out, size=size, tile=tile, channels=names)
    except LewsError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {counts['tiles']} tiles from {counts['images']} images to {out} ({counts})")


def bijie_geotiff_cmd(
    root: Path = typer.Argument(..., help="Bijie-layout dir (images/, masks/)."),
    ids: str = typer.Option(..., "--ids", help="Comma-separated image ids, mosaicked row-major."),
    out: Path = typer.Option(..., "--out", help="GeoTIFF to write (bands red, green, blue, mask)."),
    size: int = typer.Option(128, "--size", min=16),
    cols: int = typer.Option(3, "--cols", min=1),
    pixel_m: float = typer.Option(4.0, "--pixel-m", help="Pixel size of the MADE-UP UTM 48N grid."),
) -> None:
    """Mosaic Bijie images into one georeferenced GeoTIFF (made-up grid) for predict / the risk map."""
    from export.raster.bijie import write_bijie_geotiff

    try:
        info = write_bijie_geotiff(root, ids.split(","), out, size=size, cols=cols, pixel_m=pixel_m)
    except LewsError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {out} ({info})")


def site_raster_cmd(
    geotiff: Path = typer.Argument(..., help="GeoTIFF whose band descriptions name the layers."),
    out: Path = typer.Option(..., "--out", help="Site raster .npz for daemon.site_raster."),
) -> None:
    """Convert a GeoTIFF with named bands into the gateway's site raster (.npz)."""
    from export.raster.geotiff import geotiff_to_site_raster

    try:
        info = geotiff_to_site_raster(geotiff, out)
    except LewsError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {out} ({info})")


def train_unet(
    data_dir: Path = typer.Argument(..., help="Tile data dir (tiles.json)."),
    out: Path = typer.Option(..., "--out", help="RUN_DIR to write."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    base: int = typer.Option(16, "--base", min=2, help="Width of the first stage (Jetson default 16)."),
    depth: int = typer.Option(4, "--depth", min=1, max=5, help="Down-sampling steps."),
    stem: int = typer.Option(
        0, "--stem", min=0, help="Width of the first stage (0: --base; INT8 kernels like >= 16)."
    ),
    s2d: int = typer.Option(
        1, "--s2d", min=1, help="Space-to-depth factor: fold s2d x s2d pixels into channels first (1: none)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=2),
    lr: float = typer.Option(1e-3, "--lr"),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
    folds: int = typer.Option(
        0, "--folds", min=0, help="k-fold cross-validation by image (k >= 2), then a final model on all."
    ),
    ship: str = typer.Option(
        "enhanced", "--ship", help="Variant exported as `unet` (plain/hybrid/enhanced)."
    ),
    tile: int = typer.Option(128, "--tile", min=16, help="Tile size of the data dir."),
    brightness: float = typer.Option(0.2, "--brightness", min=0.0, max=0.9, help="Brightness jitter (+-)."),
    only_fold: list[int] = typer.Option(
        [], "--only-fold", help="CV: train only this fold (repeatable; for parallel processes), no final."
    ),
) -> None:
    """Train the enhanced U-Net, the plain and hybrid ablations, a random forest and the references."""
    import torch

    from export.unet.train import TrainConfig, train_run

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(
        epochs=epochs,
        seed=seed,
        base=base,
        depth=depth,
        stem=stem,
        s2d=s2d,
        batch_size=batch_size,
        lr=lr,
        tile=tile,
        folds=folds,
        ship=ship,
        brightness=brightness,
        only_folds=tuple(only_fold),
    )
    try:
        doc = train_run(data_dir, out, cfg)
    except LewsError as exc:
        raise _fail(exc) from exc
    if only_fold:
        typer.echo(f"trained folds {doc['cv_partial']} in {out}/folds; rerun without --only-fold to finish")
    elif folds:
        dice = doc["cv_metrics"][ship]["dice"]
        typer.echo(f"wrote {out}/run.json ({folds}-fold CV pooled dice {ship}: {dice})")
    else:
        typer.echo(f"wrote {out}/run.json (test dice enhanced: {doc['test_metrics']['enhanced']['dice']})")


def evaluate_unet(
    run_dir: Path = typer.Argument(..., help="RUN_DIR written by `train unet`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    images: Path | None = typer.Option(
        None, "--images", help="Evaluate the final models on this image/mask dir (same layout) instead."
    ),
    int8: bool = typer.Option(False, "--int8", help="Also INT8 (Q/DQ) vs FP32 Dice of the shipped variant."),
) -> None:
    """Dice, IoU, precision, recall and AUC of every model: held-back test tiles, CV folds, or --images."""
    from export.unet.evaluate import evaluate_run, summary_rows

    try:
        if images is not None:
            from export.unet.cv_eval import evaluate_images
            from export.unet.run import open_run

            report = evaluate_images(open_run(run_dir), images)
        else:
            report = evaluate_run(run_dir)
        if int8:
            from export.unet.int8_check import int8_check

            report["int8"] = int8_check(run_dir, images)
    except LewsError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(report))
        return
    what = f"{report['folds']}-fold CV, " if report.get("folds") else ""
    title = f"{run_dir}: {what}{report['test_tiles']} test tiles (synthetic={report['synthetic']})"
    table = Table(title=title)
    for col in ("model", "dice", "iou", "precision", "recall", "auc"):
        table.add_column(col)
    for row in summary_rows(report):
        table.add_row(*row)
    Console().print(table)


def predict_unet(
    run_dir: Path = typer.Argument(..., help="RUN_DIR written by `train unet`."),
    inputs: list[Path] = typer.Argument(..., help="Landslide4Sense .h5 patches or GeoTIFF stacks."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    rain_mm_h: float | None = typer.Option(
        None, "--rain-mm-h", help="Storm intensity P for the LSI (default P0)."
    ),
    rain_h: float | None = typer.Option(None, "--rain-h", help="Storm duration D in hours (default D0)."),
    smi: float = typer.Option(0.5, "--smi", help="Constant SMI for inputs without soil moisture (.h5)."),
    overlap: int = typer.Option(32, "--overlap", help="Tile overlap in px."),
    margin: int = typer.Option(16, "--margin", help="Zero-weight tile border in px (overlap >= 2 margin)."),
) -> None:
    """Probability map per input (GeoTIFF when georeferenced, else .npy) plus a PNG preview."""
    from export.unet.predict import PredictOptions, predict_inputs

    opts = PredictOptions(rain_mm_h=rain_mm_h, rain_h=rain_h, smi=smi, overlap=overlap, margin=margin)
    try:
        summary = predict_inputs(run_dir, list(inputs), out, opts)
    except LewsError as exc:
        raise _fail(exc) from exc
    for r in summary["outputs"]:
        typer.echo(f"{r['input']} -> {r['probability']} + {r['preview']}")


def register(groups: Groups) -> None:
    groups.data_synth.command("scenes")(synth_scenes)
    groups.data_import.command("raster")(import_raster)
    groups.data_import.command("bijie")(import_bijie_cmd)
    groups.data_import.command("bijie-geotiff")(bijie_geotiff_cmd)
    groups.data_import.command("site-raster")(site_raster_cmd)
    groups.train.command("unet")(train_unet)
    groups.evaluate.command("unet")(evaluate_unet)
    groups.predict.command("unet")(predict_unet)
