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


def train_unet(
    data_dir: Path = typer.Argument(..., help="Tile data dir (tiles.json)."),
    out: Path = typer.Option(..., "--out", help="RUN_DIR to write."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    base: int = typer.Option(16, "--base", min=2, help="Width of the first stage (Jetson default 16)."),
    depth: int = typer.Option(4, "--depth", min=1, max=5, help="Down-sampling steps."),
    batch_size: int = typer.Option(8, "--batch-size", min=2),
    lr: float = typer.Option(1e-3, "--lr"),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
) -> None:
    """Train the enhanced U-Net, the plain and hybrid ablations, a random forest and the LSI reference."""
    import torch

    from export.unet.train import TrainConfig, train_run

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(epochs=epochs, seed=seed, base=base, depth=depth, batch_size=batch_size, lr=lr)
    try:
        doc = train_run(data_dir, out, cfg)
    except LewsError as exc:
        raise _fail(exc) from exc
    typer.echo(f"wrote {out}/run.json (test dice enhanced: {doc['test_metrics']['enhanced']['dice']})")


def evaluate_unet(
    run_dir: Path = typer.Argument(..., help="RUN_DIR written by `train unet`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Dice, IoU, precision, recall and AUC of every model on the run's held-back test tiles."""
    from export.unet.evaluate import evaluate_run, summary_rows

    try:
        report = evaluate_run(run_dir)
    except LewsError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"{run_dir}: {report['test_tiles']} test tiles (synthetic={report['synthetic']})")
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
) -> None:
    """Probability map per input (GeoTIFF when georeferenced, else .npy) plus a PNG preview."""
    from export.unet.predict import PredictOptions, predict_inputs

    opts = PredictOptions(rain_mm_h=rain_mm_h, rain_h=rain_h, smi=smi, overlap=overlap)
    try:
        summary = predict_inputs(run_dir, list(inputs), out, opts)
    except LewsError as exc:
        raise _fail(exc) from exc
    for r in summary["outputs"]:
        typer.echo(f"{r['input']} -> {r['probability']} + {r['preview']}")


def register(groups: Groups) -> None:
    groups.data_synth.command("scenes")(synth_scenes)
    groups.data_import.command("raster")(import_raster)
    groups.train.command("unet")(train_unet)
    groups.evaluate.command("unet")(evaluate_unet)
    groups.predict.command("unet")(predict_unet)
