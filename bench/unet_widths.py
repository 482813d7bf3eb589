"""Channel widths against Dice on the real Bijie pairs: k-fold CV by image, the shipped variant only.

    .venv/bin/python bench/unet_widths.py TILES_DIR --base 8 --base 16 [--s2d 4] [--depth 1] [--folds 5]
        [--epochs 20] [--json OUT]

TILES_DIR: ``agent-export data import bijie ../shared/data/bijie-landslide-mini --out T --size 96
--tile 96`` (docs/riskmap.md section 8). For each ``--base`` the enhanced U-Net is trained per fold
exactly as ``train unet --folds K`` trains it (export.unet.data.kfold_by_scene / inner_split, the fold's
normalisation, export.unet.train.train_variant with the same TrainConfig, threshold = Dice-best on the
inner validation images), without the ablation variants and the forest (CPU time). Each fold's network
then goes through the bundle's export path (re-parameterisation, ONNX, every INT8 scheme with the
measured-error decisions, calibrated on 16 of the fold's fit tiles) and FP32 / INT8 Dice are pooled
over the folds (confusion counts summed, each fold at its own threshold). Speed is measured apart,
with bench/bench_unet.py --base B (speed does not depend on the weights).
Last stdout line: one JSON object.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from onnxruntime.quantization import QuantType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlib import load

from agent.features.channels import REFLECTANCE
from export.onnx_export import export_onnx, ort_outputs
from export.quantize import SCHEMES, QuantScheme, quantize_with_decisions
from export.raster.tiles import open_tileset
from export.runs import ExportModel
from export.unet.data import Brightness, fit_normalisation, inner_split, kfold_by_scene
from export.unet.evaluate import predict_unet
from export.unet.metrics import best_threshold
from export.unet.model import ProbabilityHead, count_flops, count_params
from export.unet.reparam import reparameterise
from export.unet.run import CALIBRATION_TILES, normalise_batch
from export.unet.train import TrainConfig, train_variant

log = logging.getLogger(__name__)
Counts = tuple[float, float, float]


def _counts(prob: np.ndarray, y: np.ndarray, thr: float) -> Counts:
    p, m = prob.ravel() >= thr, y.ravel().astype(bool)
    return float(np.sum(p & m)), float(np.sum(p & ~m)), float(np.sum(~p & m))


def _dice(c: Counts) -> float:
    tp, fp, fn = c
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")


def _schemes() -> dict[str, QuantScheme]:
    """The bundle's schemes plus both int8_ort weight forms compared in docs/performance.md section 4."""
    ort_s8 = dataclasses.replace(
        SCHEMES["int8_ort"], weight_type=QuantType.QInt8, weight_symmetric=True, reduce_range=True
    )
    ort_u8 = dataclasses.replace(
        SCHEMES["int8_ort"], weight_type=QuantType.QUInt8, weight_symmetric=False, reduce_range=False
    )
    return {
        **SCHEMES,
        "ort_u8s8_7bit": dataclasses.replace(ort_s8, variant_id="ort_u8s8_7bit"),
        "ort_u8u8": dataclasses.replace(ort_u8, variant_id="ort_u8u8"),
    }


def _int8_counts(
    net: torch.nn.Module, calib: np.ndarray, x: np.ndarray, y: np.ndarray, thr: float, seed: int
) -> dict[str, Counts]:
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(calib.shape[0], size=min(CALIBRATION_TILES, calib.shape[0]), replace=False))
    model = ExportModel(
        name="unet",
        task="susceptibility_map",
        module=ProbabilityHead(reparameterise(net)).eval(),
        input_names=["tiles"],
        output_names=["probability"],
        calibration_inputs={"tiles": calib[pick].astype(np.float32)},
        calibration_description="fold fit tiles",
        test_inputs={"tiles": x},
        test_targets={"probability": y[:, None].astype(np.float32)},
        meta={},
    )
    out: dict[str, Counts] = {}
    with tempfile.TemporaryDirectory(prefix="lews-widths-") as tmp:
        paths = {"fp32": Path(tmp) / "unet.fp32.onnx"}
        export_onnx(model, paths["fp32"])
        for scheme in _schemes().values():
            q = Path(tmp) / f"unet.{scheme.variant_id}.onnx"
            paths[scheme.variant_id] = quantize_with_decisions(
                paths["fp32"], q, model.calibration_inputs, scheme
            ).path
        for vid, path in paths.items():
            prob = ort_outputs(path, {"tiles": np.ascontiguousarray(x, np.float32)})["probability"]
            out[vid] = _counts(prob, y, thr)
    return out


def run_width(tiles_dir: Path, cfg: TrainConfig) -> dict[str, Any]:
    tiles = open_tileset(tiles_dir)
    channels = tiles.channels
    all_ids = [r.id for r in tiles.records]
    folds: list[dict[str, Any]] = []
    pooled: dict[str, list[Counts]] = {}
    t0 = time.perf_counter()
    net = None
    for k, test_ids in enumerate(kfold_by_scene(tiles.records, cfg.folds, cfg.seed)):
        test_set = set(test_ids)
        fit_ids, val_ids = inner_split(tiles.records, [i for i in all_ids if i not in test_set], cfg.seed + k)
        (x_fit_raw, y_fit), (x_val_raw, y_val) = tiles.load(fit_ids), tiles.load(val_ids)
        x_te_raw, y_te = tiles.load(test_ids)
        mean, std = fit_normalisation(x_fit_raw)
        x_fit, x_val, x_te = (normalise_batch(a, mean, std) for a in (x_fit_raw, x_val_raw, x_te_raw))
        bright = Brightness.for_stack(channels, REFLECTANCE, mean, std) if cfg.brightness > 0 else None
        if bright is not None:
            bright = Brightness(bright.channels, bright.shift, cfg.brightness)
        tf = time.perf_counter()
        net, hist = train_variant("enhanced", cfg, x_fit, y_fit, x_val, y_val, None, bright)
        train_s = time.perf_counter() - tf
        thr = best_threshold(predict_unet(net, x_val), y_val)
        counts = _int8_counts(net, x_fit, x_te, y_te, thr, cfg.seed)
        for vid, c in counts.items():
            pooled.setdefault(vid, []).append(c)
        best = min(hist, key=lambda e: e["val_loss"])["epoch"]
        folds.append(
            {
                "fold": k,
                "test_tiles": len(test_ids),
                "threshold": round(thr, 4),
                "best_epoch": best,
                "train_s": round(train_s, 1),
                "dice": {vid: round(_dice(c), 4) for vid, c in counts.items()},
            }
        )
        log.info(
            "base %d stem %d s2d %d fold %d: %s (%.0f s)",
            cfg.base,
            cfg.stem,
            cfg.s2d,
            k,
            folds[-1]["dice"],
            train_s,
        )
    dice = {vid: _dice(tuple(map(sum, zip(*cs, strict=True)))) for vid, cs in pooled.items()}  # type: ignore[arg-type]
    if net is None:
        raise ValueError("no folds")
    return {
        "base": cfg.base,
        "stem": cfg.stem,
        "s2d": cfg.s2d,
        "widths": [cfg.stem or cfg.base] + [cfg.base * 2**i for i in range(1, cfg.depth + 1)],
        "params": count_params(net),
        "macs_per_128px_tile": count_flops(reparameterise(net), 128, 128, len(channels)) // 2,
        "pooled_dice": {k: round(v, 4) for k, v in dice.items()},
        "dice_points_lost": {k: round(100 * (dice["fp32"] - v), 2) for k, v in dice.items() if k != "fp32"},
        "fold_dice_fp32_mean_sd": [
            round(float(np.mean([f["dice"]["fp32"] for f in folds])), 4),
            round(float(np.std([f["dice"]["fp32"] for f in folds])), 4),
        ],
        "folds": folds,
        "seconds": round(time.perf_counter() - t0, 1),
        "load": load(),
    }


def main(
    tiles_dir: Path = typer.Argument(..., help="Bijie tile dir (agent-export data import bijie)."),
    base: list[int] = typer.Option([8], "--base", help="U-Net base widths to train (repeatable)."),
    depth: int = typer.Option(3, help="U-Net depth."),
    stem: int = typer.Option(0, help="Width of the first stage (0: the base width)."),
    s2d: int = typer.Option(1, help="Space-to-depth factor of the input (1: none)."),
    folds: int = typer.Option(5, help="Folds (by image)."),
    epochs: int = typer.Option(20, help="Epochs per fold."),
    seed: int = typer.Option(0, help="Seed (folds, init, augmentation)."),
    tile: int = typer.Option(96, help="Tile size of TILES_DIR."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    results = []
    for b in base:
        cfg = TrainConfig(
            epochs=epochs,
            seed=seed,
            base=b,
            depth=depth,
            stem=stem,
            s2d=s2d,
            batch_size=4,
            lr=2e-3,
            tile=tile,
            folds=folds,
        )
        results.append(run_width(tiles_dir, cfg))
        if json_out is not None:
            json_out.write_text(json.dumps({"benchmark": "unet_widths", "widths": results}) + "\n")
    typer.echo(json.dumps({"benchmark": "unet_widths", "widths": results}))


if __name__ == "__main__":
    typer.run(main)
