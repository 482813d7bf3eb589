"""`evaluate unet --int8`: does the shipped variant keep its Dice after the bundle's export path?

For every CV fold (or the run's test split, or ``--images``) the fold's shipped network goes through
what `bundle` does to it: re-parameterisation + sigmoid head (export.unet.run.export_module), ONNX
export (export.onnx_export), Q/DQ INT8 with the measured-error decisions (export.quantize, every
scheme of the bundle), calibrated on up to 16 of the fold's own training tiles. FP32 and INT8 are run
with onnxruntime on the fold's test tiles and thresholded at the fold's threshold; Dice is pooled
over folds like `evaluate`. The gate: INT8 Dice within 1 point (0.01) of FP32.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export.onnx_export import export_onnx, ort_outputs
from export.quantize import quantize_with_decisions, schemes_for
from export.runs import ExportModel
from export.unet.run import CALIBRATION_TILES, UnetRun, export_module, normalise_batch, open_run

GATE_POINTS = 1.0


def _dice(prob: np.ndarray, y: np.ndarray, thr: float) -> tuple[float, float, float]:
    p = prob.ravel() >= thr
    m = y.ravel().astype(bool)
    return float(np.sum(p & m)), float(np.sum(p & ~m)), float(np.sum(~p & m))


def _case(
    run: UnetRun, fold: int | None, calib: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, thr: float
) -> dict[str, Any]:
    rng = np.random.default_rng(int(run.doc["seed"]))
    pick = np.sort(rng.choice(calib.shape[0], size=min(CALIBRATION_TILES, calib.shape[0]), replace=False))
    model = ExportModel(
        name="unet",
        task="susceptibility_map",
        module=export_module(run, fold=fold),
        input_names=["tiles"],
        output_names=["probability"],
        calibration_inputs={"tiles": calib[pick].astype(np.float32)},
        calibration_description="fold training tiles",
        test_inputs={"tiles": x_test},
        test_targets={"probability": y_test[:, None].astype(np.float32)},
        meta={"channels": run.channels},
    )
    counts: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lews-int8-") as tmp:
        fp32 = Path(tmp) / "unet.fp32.onnx"
        export_onnx(model, fp32)
        paths = {"fp32": fp32}
        for scheme in schemes_for(model.task).values():
            out = Path(tmp) / f"unet.{scheme.variant_id}.onnx"
            paths[scheme.variant_id] = quantize_with_decisions(
                fp32, out, model.calibration_inputs, scheme
            ).path
        for vid, path in paths.items():
            prob = ort_outputs(path, {"tiles": np.ascontiguousarray(x_test, np.float32)})["probability"]
            counts[vid] = _dice(prob, y_test, thr)
    return {"fold": fold, "tiles": int(x_test.shape[0]), "threshold": thr, "counts": counts}


def _dice_of(c: tuple[float, float, float]) -> float | None:
    tp, fp, fn = c
    return round(2 * tp / (2 * tp + fp + fn), 6) if (2 * tp + fp + fn) else None


def int8_check(run_dir: Path, images: Path | None = None) -> dict[str, Any]:
    run = open_run(run_dir)
    ship = run.shipped_variant
    cases = []
    tiles = run.tileset()
    if images is not None or "cv" not in run.doc:
        _, calib, _ = run.load_split("train")
        if images is not None:
            from export.raster.bijie import bijie_tiles

            imp = run.doc["import"]
            _, x_raw, y = bijie_tiles(images, int(imp["size"]), int(imp["tile"]), run.channels)
            x = normalise_batch(x_raw, run.mean, run.std)
        else:
            _, x, y = run.load_split("test")
        cases.append(_case(run, None, calib, x, y, float(run.doc["thresholds"][ship])))
    else:
        for fd in run.doc["cv"]["folds"]:
            norm = fd["normalisation"]
            c_raw, _ = tiles.load(list(fd["split"]["train"]))
            t_raw, y = tiles.load(list(fd["split"]["test"]))
            calib = normalise_batch(c_raw, norm["mean"], norm["std"])
            x = normalise_batch(t_raw, norm["mean"], norm["std"])
            cases.append(_case(run, int(fd["fold"]), calib, x, y, float(fd["thresholds"][ship])))
    variants = list(cases[0]["counts"])
    pooled = {
        vid: _dice_of(
            (
                sum(c["counts"][vid][0] for c in cases),
                sum(c["counts"][vid][1] for c in cases),
                sum(c["counts"][vid][2] for c in cases),
            )
        )
        for vid in variants
    }
    lost = {
        vid: round(100.0 * ((pooled["fp32"] or 0.0) - (pooled[vid] or 0.0)), 3)
        for vid in variants
        if vid != "fp32"
    }
    return {
        "variant": ship,
        "gate_points": GATE_POINTS,
        "pooled_dice": pooled,
        "dice_points_lost": lost,
        "passes": all(v <= GATE_POINTS for v in lost.values()),
        "folds": [
            {
                "fold": c["fold"],
                "tiles": c["tiles"],
                "threshold": round(c["threshold"], 6),
                "dice": {vid: _dice_of(c["counts"][vid]) for vid in variants},
            }
            for c in cases
        ],
    }
