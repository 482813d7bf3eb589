"""Turn training runs into a signed model bundle (docs/bundle-format.md).

For every model of every run: FP32 ONNX (checked against torch), two Q/DQ INT8 variants with
measured per-node decisions, FP32-vs-INT8 accuracy on the run's test split, golden vectors, then a
manifest with the sha256 of every file, signed with Ed25519. The bundle is written to a temporary
directory beside the target and renamed into place only when complete, then verified.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

import export
from agent.errors import ExportError
from agent.inference.manifest import MANIFEST_NAME, SCHEMA_VERSION, sha256_file, validate_manifest
from agent.inference.verify import public_key_sha256, verify_bundle
from export.onnx_export import export_onnx, ort_outputs
from export.quantize import count_qdq, quantize_with_decisions, schemes_for
from export.runs import ExportModel, LoadedRun
from export.signing import load_private_key, sign_manifest

log = logging.getLogger(__name__)

GOLDEN_COUNT = 8
GOLDEN_MAX_BYTES = 1 << 20  # golden inputs per model: at most 8 samples and about 1 MiB (>= 2 samples)
CALIBRATION_MAX = 512
FP32_TOL_ATOL, FP32_TOL_RTOL = 1e-4, 1e-3
# INT8 golden check (docs/bundle-format.md): the INT8 output is compared with the FP32 golden output, allowed
# INT8_TOL_MARGIN x the largest |INT8 - FP32| this model shows over its calibration set, plus a floor of
# INT8_TOL_FLOOR_STD x std(FP32 output). The bound is the model's own quantization error, not bits from the
# build machine's CPU, so another instruction set (or TensorRT) rounding a few int8 steps apart passes and a
# wrong graph, weight or runtime does not.
INT8_TOL_MARGIN = 2.0
INT8_TOL_FLOOR_STD = 0.01


def _evenly(inputs: dict[str, np.ndarray], limit: int) -> tuple[dict[str, np.ndarray], list[int]]:
    n = int(next(iter(inputs.values())).shape[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int)).tolist()
    return {k: np.ascontiguousarray(v[idx], dtype=np.float32) for k, v in inputs.items()}, idx


def _tensor_specs(values: Sequence[onnx.ValueInfoProto], path: Path) -> list[dict[str, Any]]:
    specs = []
    for vi in values:
        tt = vi.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise ExportError(
                f"{path}: {vi.name!r} is not float32", fix="models must take and return float32"
            )
        shape: list[int | str] = []
        for axis, dim in enumerate(tt.shape.dim):
            if dim.HasField("dim_value"):
                shape.append(int(dim.dim_value))
            elif axis == 0:
                shape.append("batch")
            else:
                raise ExportError(
                    f"{path}: {vi.name!r} axis {axis} is dynamic ({dim.dim_param}); only the batch may be",
                    fix="export with a fixed window length / tile size",
                )
        specs.append({"name": vi.name, "shape": shape, "dtype": "float32"})
    return specs


def _is_binary(a: np.ndarray) -> bool:
    return bool(np.isin(np.unique(a), [0.0, 1.0]).all())


def output_metrics(pred: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """MAE/RMSE for a regression target; precision/recall/F1 (= Dice on maps) for a binary one."""
    pred = pred.astype(np.float64)
    if _is_binary(target):
        p, t = pred >= threshold, target >= 0.5
        tp, fp, fn = float((p & t).sum()), float((p & ~t).sum()), float((~p & t).sum())
        return {
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "f1_dice": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        }
    err = pred - target
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}


def accuracy_table(model: ExportModel, paths: dict[str, Path], *, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric for every variant on the run's test split, plus INT8-vs-FP32 agreement."""
    inputs = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.test_inputs.items()}
    n = int(next(iter(inputs.values())).shape[0]) if inputs else 0
    table: dict[str, Any] = {"test_count": n, "metrics": {}, "int8_vs_fp32": {}}
    if n == 0:
        log.warning("model %s: the run has no test inputs; no accuracy table", model.name)
        return table
    preds = {vid: ort_outputs(path, inputs) for vid, path in paths.items()}
    for vid, outs in preds.items():
        table["metrics"][vid] = {
            name: output_metrics(outs[name], model.test_targets[name], threshold)
            for name in model.output_names
            if name in model.test_targets
        }
    ref = preds["fp32"]
    for vid, outs in preds.items():
        if vid == "fp32":
            continue
        cmp: dict[str, Any] = {}
        for name in model.output_names:
            d = {"max_abs_diff": float(np.abs(outs[name] - ref[name]).max())}
            target = model.test_targets.get(name)
            if target is not None and _is_binary(target):
                a, b = ref[name] >= threshold, outs[name] >= threshold
                d["thresholded_agreement"] = float((a == b).mean())
                inter, union = float((a & b).sum()), float((a | b).sum())
                d["thresholded_iou"] = inter / union if union else 1.0
                f_fp, f_q = table["metrics"]["fp32"][name]["f1_dice"], table["metrics"][vid][name]["f1_dice"]
                d["f1_dice_points_lost"] = 100.0 * (f_fp - f_q)
            elif target is not None:
                m_fp, m_q = table["metrics"]["fp32"][name]["mae"], table["metrics"][vid][name]["mae"]
                d["mae_change_pct"] = 100.0 * (m_q - m_fp) / m_fp if m_fp else 0.0
            cmp[name] = d
        table["int8_vs_fp32"][vid] = cmp
    return table


def _golden_tolerance(
    variant_id: str, calib_ref: dict[str, np.ndarray], calib_out: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Per output {atol, rtol}; for INT8 against the FP32 golden outputs (see INT8_TOL_MARGIN)."""
    tol = {}
    for name, ref in calib_ref.items():
        if variant_id == "fp32":
            atol = FP32_TOL_ATOL * max(1.0, float(np.abs(calib_out[name]).max()))
            tol[name] = {"atol": atol, "rtol": FP32_TOL_RTOL}
        else:
            quant_err = float(np.abs(calib_out[name].astype(np.float64) - ref).max())
            floor = INT8_TOL_FLOOR_STD * float(np.std(ref)) + 1e-4
            tol[name] = {"atol": INT8_TOL_MARGIN * quant_err + floor, "rtol": 0.0}
    return tol


def _golden_basis(variant_id: str, calib_count: int) -> str:
    if variant_id == "fp32":
        return f"own outputs; atol {FP32_TOL_ATOL} x max(1, max|output|), rtol {FP32_TOL_RTOL}"
    return (
        f"FP32 golden outputs; atol = {INT8_TOL_MARGIN} x max|{variant_id} - fp32| over the {calib_count} "
        f"calibration inputs + {INT8_TOL_FLOOR_STD} x std(fp32 output) + 1e-4, rtol 0"
    )


def _feature_names(model: ExportModel) -> list[str]:
    for key in ("feature_names", "channels", "channel_names"):
        names = model.meta.get(key)
        if isinstance(names, list | tuple) and names:
            return [str(n) for n in names]
    raise ExportError(
        f"model {model.name!r}: meta has no 'feature_names' (or 'channels') list",
        fix="the training run must record the input features/channels in order in "
        "ExportModel.meta['feature_names']",
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def build_model(model: ExportModel, out: Path, *, calibration_max: int = CALIBRATION_MAX) -> dict[str, Any]:
    """Write <name>.fp32.onnx, <name>.int8_{trt,ort}.onnx, <name>.golden.npz; return the manifest entry."""
    if not model.calibration_inputs or set(model.calibration_inputs) != set(model.input_names):
        raise ExportError(
            f"model {model.name!r}: calibration inputs {sorted(model.calibration_inputs)} "
            f"!= inputs {model.input_names}",
            fix="the run must provide real training inputs for every model input",
        )
    features = _feature_names(model)
    for kind, given in (("calibration", model.calibration_inputs), ("test", model.test_inputs)):
        for name, arr in given.items():
            bad = int(np.size(arr) - np.isfinite(arr).sum())
            if bad:
                raise ExportError(
                    f"model {model.name!r}: {kind} input {name!r} has {bad} non-finite values",
                    fix="the run must give the exact (normalised, gap-filled) inputs the gateway will feed",
                )
    calib, calib_idx = _evenly(model.calibration_inputs, calibration_max)
    fp32_path = out / f"{model.name}.fp32.onnx"
    report = export_onnx(model, fp32_path)
    proto = onnx.load(str(fp32_path))
    inputs = _tensor_specs(proto.graph.input, fp32_path)
    outputs = _tensor_specs(proto.graph.output, fp32_path)
    if inputs[0]["shape"][1] != len(features):
        raise ExportError(
            f"model {model.name!r}: {len(features)} feature names but input {inputs[0]['name']!r} has "
            f"{inputs[0]['shape'][1]} on axis 1",
            fix="meta['feature_names'] must list the input features in order",
        )
    paths = {"fp32": fp32_path}
    variants: list[dict[str, Any]] = []
    quant_blocks: dict[str, dict[str, Any]] = {}
    schemes = schemes_for(model.task)
    for scheme in schemes.values():
        result = quantize_with_decisions(
            fp32_path, out / f"{model.name}.{scheme.variant_id}.onnx", calib, scheme
        )
        paths[scheme.variant_id] = result.path
        block = result.manifest_block(len(calib_idx))
        block["op_counts"] = count_qdq(result.path)
        quant_blocks[scheme.variant_id] = block
    per_sample = sum(int(v[0].nbytes) for v in calib.values())
    n_golden = max(2, min(GOLDEN_COUNT, GOLDEN_MAX_BYTES // max(per_sample, 1)))
    golden_in = {k: v[:n_golden] for k, v in calib.items()}
    calib_ref = ort_outputs(fp32_path, calib)
    arrays: dict[str, np.ndarray] = {f"input__{k}": v for k, v in golden_in.items()}
    for vid, path in paths.items():
        golden_out = ort_outputs(path, golden_in)
        arrays.update({f"output__{vid}__{k}": v for k, v in golden_out.items()})
        runtimes = ["onnxruntime", "tensorrt"] if vid == "fp32" else list(schemes[vid].runtimes)
        calib_out = calib_ref if vid == "fp32" else ort_outputs(path, calib)
        variant: dict[str, Any] = {
            "id": vid,
            "precision": "fp32" if vid == "fp32" else "int8",
            "runtimes": runtimes,
            "file": path.name,
            "golden_reference": "self" if vid == "fp32" else "fp32",
            "golden_tolerance": _golden_tolerance(vid, calib_ref, calib_out),
            "golden_tolerance_basis": _golden_basis(vid, len(calib_idx)),
        }
        if vid in quant_blocks:
            variant["quantization"] = quant_blocks[vid]
        variants.append(variant)
    golden_name = f"{model.name}.golden.npz"
    np.savez_compressed(out / golden_name, allow_pickle=False, **arrays)
    threshold = (
        float(model.meta.get("threshold", 0.5))
        if isinstance(model.meta.get("threshold", 0.5), int | float)
        else 0.5
    )
    entry = {
        "name": model.name,
        "task": model.task,
        "inputs": inputs,
        "outputs": outputs,
        "feature_names": features,
        "feature_axis": 1,
        "variants": variants,
        "calibration": {
            "count": len(calib_idx),
            "description": model.calibration_description,
            "indices": calib_idx,
            "method": "onnxruntime static quantization, MinMax",
        },
        "golden": {"file": golden_name, "count": int(next(iter(golden_in.values())).shape[0])},
        "accuracy": accuracy_table(model, paths, threshold=threshold),
        "export": report.as_dict(),
        "meta": _jsonable(model.meta),
    }
    return entry


def build_bundle(
    runs: Sequence[LoadedRun],
    sign_key: Path,
    out: Path,
    *,
    bundle_id: str | None = None,
    force: bool = False,
    calibration_max: int = CALIBRATION_MAX,
    verify: bool = True,
) -> Path:
    """Write a complete, signed, verified bundle to `out` (atomically: temp dir, then rename)."""
    key = load_private_key(sign_key)  # fail before any work when the key is unusable
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(
            f"{out} exists and is not empty", fix="choose a new --out or pass --force to replace it"
        )
    models = [m for run in runs for m in run.models]
    if not models:
        raise ExportError(
            "the given runs contain no models", fix="pass RUN_DIRs written by `agent-export train`"
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ExportError(
            f"two runs export a model with the same name: {names}", fix="pass one run per network"
        )
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    bundle_id = bundle_id or f"{'-'.join(names)}-{created.strftime('%Y%m%dT%H%M%SZ')}"
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        entries = [build_model(m, tmp, calibration_max=calibration_max) for m in models]
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.iterdir())
            if p.is_file()
        }
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "bundle_id": bundle_id,
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "producer": {
                "tool": "agent-export",
                "version": export.__version__,
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "python": platform.python_version(),
                "runs": ", ".join(str(r.run_dir) for r in runs),
            },
            "models": entries,
            "files": files,
        }
        signed = sign_manifest(manifest, key)
        validate_manifest(signed, path=tmp / MANIFEST_NAME)
        (tmp / MANIFEST_NAME).write_text(_dump(signed), encoding="utf-8")
        if verify:
            verify_bundle(tmp, key.public_key())
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("bundle %s written to %s, signed by key %s", bundle_id, out, public_key_sha256(key.public_key()))
    return out


def _dump(manifest: dict[str, Any]) -> str:
    import json

    return json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
