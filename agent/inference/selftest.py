"""`agent selftest`: does this gateway compute what the bundle was validated with, and how fast?

No torch, no pytest: what a field engineer runs after installing (docs/jetson.md), what `agent
diagnose --selftest` runs, and what the GPU-marked test calls. Stages, in order, each recorded:

1. verify: signature, file hashes, schema and the onnxruntime golden check (`verify_bundle`), so an
   untrusted or altered bundle is never loaded;
2. load: the backend asked for: onnxruntime, or TensorRT (an engine from `agent-export engine`;
   with build=True a missing or mismatched engine is built here first, agent/inference/trt_build.py);
3. golden: every model's golden inputs through that backend, against the bundle's reference within its
   stated tolerance; the max |error| vs FP32 is reported per output;
4. timed: a batch of the size the daemon runs (trt_build.DAEMON_BATCH) made from the golden inputs,
   warmed up, then timed: latency p50/p95 per batch and throughput in samples/s.

The report passes only when every stage passes.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import EngineMismatchError, LewsError
from agent.inference.backend import Backend
from agent.inference.manifest import ModelEntry, model_entries, read_manifest
from agent.inference.trt_build import DAEMON_BATCH
from agent.inference.verify import compare_outputs, golden_reference, load_golden, verify_bundle

log = logging.getLogger(__name__)

WARMUP_RUNS = 3
MIN_TIMED_RUNS = 10
TIMED_BUDGET_S = 2.0  # per model: stop timing after this (at least MIN_TIMED_RUNS runs)


@dataclass
class Stage:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    seconds: float = 0.0


@dataclass
class ModelFigures:
    variant: str
    golden_error_over_tolerance: dict[str, float]
    max_abs_error_vs_fp32: dict[str, float]
    batch: int
    timed_runs: int
    latency_ms_p50: float
    latency_ms_p95: float
    throughput_per_s: float


@dataclass
class SelftestReport:
    bundle_dir: str
    backend: str
    precision: str
    ok: bool = False
    bundle_id: str = ""
    runtime: dict[str, str] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    models: dict[str, ModelFigures] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_info(backend: str) -> dict[str, str]:
    """Versions and the CPU instruction set the INT8 kernels may depend on (x86: VNNI or not)."""
    info = {"python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__}
    try:
        flags = next(
            (ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
             if ln.startswith(("flags", "Features"))),
            [],
        )  # fmt: skip
        isa = [f for f in ("avx512_vnni", "avx_vnni", "avx512f", "avx2", "asimddp", "asimd") if f in flags]
        info["cpu_isa"] = ",".join(isa) or "unknown"
    except OSError:
        info["cpu_isa"] = "unknown"
    if backend == "onnxruntime":
        import onnxruntime

        info["onnxruntime"] = str(onnxruntime.__version__)
    return info


def installed_bundle(inference: Any, daemon_state_dir: Path) -> Path:
    """The bundle the daemon uses: the active A/B slot when there is one, else inference.bundle_dir."""
    import json

    from agent.inference.ab import SLOTS, STATE_FILE

    root = inference.state_dir if inference.state_dir is not None else daemon_state_dir / "bundles"
    try:
        slot = json.loads((Path(root) / STATE_FILE).read_text("utf-8")).get("slot")
    except (OSError, ValueError):
        slot = None
    if slot in SLOTS and (Path(root) / f"slot-{slot}").is_dir():
        return Path(root) / f"slot-{slot}"
    return Path(inference.bundle_dir)


def _tile(inputs: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    """A batch of `batch` rows cycling through the golden inputs."""
    out = {}
    for k, v in inputs.items():
        idx = np.arange(batch) % v.shape[0]
        out[k] = np.ascontiguousarray(v[idx], dtype=np.float32)
    return out


def time_model(
    backend: Backend, entry: ModelEntry, inputs: Mapping[str, np.ndarray], batch: int
) -> dict[str, Any]:
    feed = _tile(inputs, batch)
    for _ in range(WARMUP_RUNS):
        backend.run(entry.name, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < MIN_TIMED_RUNS or time.perf_counter() - start < TIMED_BUDGET_S:
        t0 = time.perf_counter()
        out = backend.run(entry.name, feed)
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * MIN_TIMED_RUNS and time.perf_counter() - start >= TIMED_BUDGET_S:
            break
    bad = sorted(k for k, v in out.items() if not np.isfinite(v).all())
    if bad:
        raise ValueError(f"non-finite outputs {bad} in the timed batch")
    ms = np.asarray(times) * 1e3
    return {
        "batch": batch,
        "timed_runs": len(times),
        "latency_ms_p50": float(np.percentile(ms, 50)),
        "latency_ms_p95": float(np.percentile(ms, 95)),
        "throughput_per_s": float(batch * len(times) / max(sum(times), 1e-9)),
    }


def _open_backend(
    bundle_dir: Path, manifest: dict[str, Any], backend: str, precision: str, threads: int, build: bool
) -> Backend:
    entries = model_entries(manifest)
    if backend == "onnxruntime":
        from agent.inference.ort_backend import OrtBackend

        return OrtBackend(bundle_dir, entries, precision=precision, threads=threads, use_cuda=False)
    from agent.inference.trt_backend import TrtBackend

    try:
        return TrtBackend(bundle_dir, entries, manifest["files"], precision=precision)
    except EngineMismatchError as exc:  # no engine, or one from another TensorRT/GPU/bundle
        if not build:
            raise
        log.warning("%s; building the engines on this device", exc)
    from agent.inference.trt_build import BuildOptions, build_engines

    build_engines(bundle_dir, BuildOptions(precision=precision))
    return TrtBackend(bundle_dir, entries, manifest["files"], precision=precision)


def _stage(report: SelftestReport, name: str, fn: Any) -> Any:
    t0 = time.perf_counter()
    try:
        value = fn()
    except LewsError as exc:
        report.stages.append(Stage(name, False, exc.message, exc.fix, time.perf_counter() - t0))
        return None
    except Exception as exc:  # onnxruntime / TensorRT / CUDA errors: reported, not raised
        report.stages.append(Stage(name, False, f"{type(exc).__name__}: {exc}", "", time.perf_counter() - t0))
        return None
    report.stages.append(Stage(name, True, "", "", time.perf_counter() - t0))
    return value if value is not None else True


def run_selftest(
    bundle_dir: Path,
    public_key: Path | None,
    *,
    backend: str = "onnxruntime",
    precision: str = "int8",
    threads: int = 1,
    build: bool = True,
    golden_scale: float = 1.0,
    batch: int | None = None,
) -> SelftestReport:
    """Run every stage; never raises for a failing stage (the report says which and why)."""
    bundle_dir = Path(bundle_dir)
    report = SelftestReport(str(bundle_dir), backend, precision, runtime=runtime_info(backend))
    verified = _stage(report, "verify", lambda: verify_bundle(bundle_dir, public_key, threads=threads,
                                                              golden_scale=golden_scale))  # fmt: skip
    if verified is None:
        return report
    manifest = read_manifest(bundle_dir)
    report.bundle_id = str(manifest["bundle_id"])
    opened = _stage(
        report, "load", lambda: _open_backend(bundle_dir, manifest, backend, precision, threads, build)
    )
    if opened is None:
        return report
    be: Backend = opened
    try:
        for entry in model_entries(manifest):
            figures = _stage(
                report,
                f"golden+timed:{entry.name}",
                lambda e=entry: _model(be, bundle_dir, e, golden_scale, batch),
            )
            if figures is not None:
                report.models[entry.name] = figures
    finally:
        be.close()
    report.ok = all(s.ok for s in report.stages)
    return report


def _model(
    backend: Backend, bundle_dir: Path, entry: ModelEntry, golden_scale: float, batch: int | None
) -> ModelFigures:
    from agent.errors import GoldenMismatchError

    variant_id = backend.variant_id(entry.name)
    variant = next(v for v in entry.variants if v.id == variant_id)
    golden = load_golden(bundle_dir, entry)
    got = backend.run(entry.name, golden.inputs)
    want = golden_reference(golden, variant, bundle_dir / entry.golden_file)
    ratios = compare_outputs(got, want, variant.golden_tolerance, scale=golden_scale)
    fp32 = golden.outputs.get("fp32", {})
    err = {k: float(np.abs(np.asarray(got[k], np.float64) - v).max()) for k, v in fp32.items() if k in got}
    if not max(ratios.values()) <= 1.0:
        raise GoldenMismatchError(
            f"model {entry.name!r} ({variant_id}) on {backend.name}: golden error / tolerance {ratios}",
            fix="this runtime computes something else than the bundle was validated with: rebuild the "
            "engine, check the onnxruntime/TensorRT version, or use precision fp32",
        )
    n = batch or DAEMON_BATCH.get(entry.name, 8)
    timed = time_model(backend, entry, golden.inputs, n)
    return ModelFigures(variant_id, ratios, err, **timed)
