"""Benchmark (not a test): torch eager FP32 vs onnxruntime FP32 / INT8, both networks, batch 1 and 8.

    .venv/bin/python -m bench.bench_inference RUN_DIR [RUN_DIR...] [--bundle BUNDLE_DIR] [--threads N]

Torch modules come from the training runs; the ONNX files from BUNDLE_DIR (default: a bundle built
from the runs into a temporary directory with a throw-away key). Inputs are the runs' real test
inputs, repeated to fill the batch. `run_bench()` returns the results as a dict (for `make bench`).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from typer import echo

from agent.errors import ExportError
from agent.inference.manifest import model_entries, read_manifest
from export.run_loader import load_run
from export.runs import ExportModel

log = logging.getLogger(__name__)

BATCHES = (1, 8)


def _batch(inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    out = {}
    for k, v in inputs.items():
        reps = int(np.ceil(n / v.shape[0]))
        out[k] = np.ascontiguousarray(np.concatenate([v] * reps)[:n], dtype=np.float32)
    return out


def _time(fn: Callable[[], object], min_seconds: float, min_iters: int) -> dict[str, float]:
    for _ in range(3):
        fn()  # warm-up
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < min_iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {"median_ms": 1000 * statistics.median(samples), "iters": len(samples)}


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def bench_model(
    model: ExportModel, bundle: Path, files: dict[str, str], *, threads: int, min_seconds: float
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    model.module.eval()
    results: dict[str, Any] = {}
    sessions = {vid: _session(bundle / f, threads) for vid, f in files.items()}
    for batch in BATCHES:
        x = _batch(model.test_inputs, batch)
        tx = tuple(torch.from_numpy(x[n]) for n in model.input_names)
        row: dict[str, Any] = {}

        def eager(tx: tuple[torch.Tensor, ...] = tx) -> object:
            with torch.inference_mode():
                return model.module(*tx)

        row["torch_eager_fp32"] = _time(eager, min_seconds, 5)
        for vid, sess in sessions.items():

            def infer(s: ort.InferenceSession = sess, x: dict[str, np.ndarray] = x) -> object:
                return s.run(None, x)

            row[f"ort_{vid}"] = _time(infer, min_seconds, 5)
        base = row["torch_eager_fp32"]["median_ms"]
        for v in row.values():
            v["items_per_s"] = batch * 1000.0 / v["median_ms"]
            v["speedup_vs_torch"] = base / v["median_ms"]
        row["int8_ort_vs_ort_fp32"] = row["ort_fp32"]["median_ms"] / row["ort_int8_ort"]["median_ms"]
        results[f"batch_{batch}"] = row
    return results


def run_bench(
    run_dirs: list[Path], bundle: Path | None = None, *, threads: int = 1, min_seconds: float = 2.0
) -> dict[str, Any]:
    """Time every model of the runs; returns {"threads":..., "models": {name: {batch_N: {...}}}}."""
    runs = [load_run(d) for d in run_dirs]
    with tempfile.TemporaryDirectory(prefix="lews-bench-") as tmp:
        if bundle is None:
            from export.bundle import build_bundle
            from export.signing import keygen

            keygen(Path(tmp) / "keys")
            bundle = build_bundle(runs, Path(tmp) / "keys" / "signing.key", Path(tmp) / "bundle")
        manifest = read_manifest(bundle)
        out: dict[str, Any] = {
            "threads": threads,
            "cpu": platform.processor() or platform.machine(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "bundle_id": manifest["bundle_id"],
            "models": {},
        }
        entries = {e.name: e for e in model_entries(manifest)}
        for run in runs:
            for model in run.models:
                entry = entries.get(model.name)
                shape = tuple(next(iter(model.test_inputs.values())).shape[1:])
                if entry is None or tuple(entry.inputs[0].shape[1:]) != shape:
                    raise ExportError(
                        f"bundle {bundle} has no model {model.name!r} with input shape {shape} "
                        f"(from run {run.run_dir})",
                        fix="pass the bundle built from these runs, or leave out --bundle",
                    )
                files = {v.id: v.file for v in entry.variants}
                params = sum(p.numel() for p in model.module.parameters())
                res = bench_model(model, Path(bundle), files, threads=threads, min_seconds=min_seconds)
                res["parameters"] = params
                res["input_shape"] = list(entry.inputs[0].shape)
                out["models"][model.name] = res
    return out


def _report(result: dict[str, Any]) -> None:
    echo(
        f"threads={result['threads']} cpu={result['cpu']} onnxruntime={result['onnxruntime']} "
        f"torch={result['torch']}"
    )
    for name, res in result["models"].items():
        echo(f"\n{name}: {res['parameters']} parameters, input {res['input_shape']}")
        for batch in BATCHES:
            row = res[f"batch_{batch}"]
            echo(f"  batch {batch}:")
            for key, v in row.items():
                if isinstance(v, dict):
                    echo(
                        f"    {key:18s} {v['median_ms']:9.3f} ms  {v['items_per_s']:9.1f}/s  "
                        f"x{v['speedup_vs_torch']:.2f} vs torch"
                    )
            echo(f"    INT8 (u8s8) vs FP32 in onnxruntime: x{row['int8_ort_vs_ort_fp32']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the result dict here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run_bench(args.runs, args.bundle, threads=args.threads, min_seconds=args.min_seconds)
    _report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
