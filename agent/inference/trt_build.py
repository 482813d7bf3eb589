"""Build TensorRT 10 engines from a bundle's Q/DQ ONNX, on the device (no torch): used by
`agent-export engine` (export/engine.py) and by `agent selftest --backend tensorrt`.

- Strongly typed networks only: the INT8 variant's Q/DQ nodes fix every precision, the FP32 variant
  runs in FP32 (TF32 cleared). No FP16/INT8 builder flags (deprecated for weakly typed networks
  since TensorRT 10.12).
- One optimisation profile per engine: min batch 1, opt = the batch the daemon runs for that model
  (DAEMON_BATCH), max = --max-batch.
- A timing cache in BUNDLE/engines/timing.cache: loaded when it fits this TensorRT/device (checked:
  a refused cache is logged and replaced), written back atomically only when it serialises.
- TensorRT's own log goes through `logging` (TrtLogBridge), so journald gets it with priorities.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ExportError

log = logging.getLogger(__name__)

TIMING_CACHE = "timing.cache"
# The batch each model runs with in the daemon: agent/riskmap.py runs U-Net tiles in batches of
# riskmap.BATCH (2), agent/forecaster.py one window per forecast (1). The profile's opt shape and the
# selftest's timed batch; tests/test_engine_sidecar.py fails if riskmap.BATCH changes without this.
DAEMON_BATCH: dict[str, int] = {"unet": 2, "displacement": 1}


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "int8"  # int8: the Q/DQ variant made for TensorRT; fp32: the FP32 ONNX
    workspace_bytes: int = 256 << 20
    max_batch: int = 8
    tolerance_scale: float = 1.0
    opt_batch: int | None = None  # None: DAEMON_BATCH of the model (capped at max_batch)

    @property
    def strongly_typed(self) -> bool:
        return True  # always; kept as a property so the sidecar records it

    def opt_for(self, model: str) -> int:
        want = self.opt_batch if self.opt_batch is not None else DAEMON_BATCH.get(model, self.max_batch)
        return max(1, min(int(want), self.max_batch))


def profile_shapes(
    shape: tuple[int | str, ...], max_batch: int, opt_batch: int | None = None
) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes for an input whose axis 0 is 'batch' (opt: the daemon's batch)."""
    if max_batch < 1:
        raise ExportError(f"--max-batch {max_batch} must be >= 1", fix="pass --max-batch 1 or more")
    opt = max_batch if opt_batch is None else opt_batch
    if not 1 <= opt <= max_batch:
        raise ExportError(
            f"optimisation batch {opt} is outside 1..{max_batch}", fix="pass --opt-batch within --max-batch"
        )
    rest = tuple(int(d) for d in shape[1:])
    return (1, *rest), (opt, *rest), (max_batch, *rest)


def make_logger(trt: Any) -> Any:
    """A trt.ILogger that forwards TensorRT's messages to the `tensorrt` logger (journald priorities)."""
    levels = {
        trt.ILogger.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.ERROR: logging.ERROR,
        trt.ILogger.WARNING: logging.WARNING,
        trt.ILogger.INFO: logging.INFO,
        trt.ILogger.VERBOSE: logging.DEBUG,
    }
    trt_log = logging.getLogger("tensorrt")

    class TrtLogBridge(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # TensorRT's Python API requires the explicit base __init__

        def log(self, severity: Any, msg: str) -> None:
            trt_log.log(levels.get(severity, logging.WARNING), "%s", msg)

    bridge = TrtLogBridge()
    bridge.min_severity = trt.ILogger.INFO if trt_log.isEnabledFor(logging.INFO) else trt.ILogger.WARNING
    return bridge


def parser_errors(parser: Any) -> list[str]:
    """Every error the ONNX parser recorded, in full (node, operator, description)."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        parts = [str(err)]
        for attr in ("node", "node_name", "node_operator", "code", "desc"):
            fn = getattr(err, attr, None)
            if callable(fn):
                try:
                    parts.append(f"{attr}={fn()}")
                except Exception:  # older TensorRT builds lack some accessors
                    continue
        out.append(" | ".join(parts))
    return out


def attach_timing_cache(config: Any, cache_path: Path) -> dict[str, Any]:
    """Load the timing cache into `config`; a cache TensorRT refuses is replaced by an empty one."""
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    info: dict[str, Any] = {"path": str(cache_path), "bytes_in": len(data), "loaded": False}
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        info["loaded"] = bool(data)
        return info
    log.warning(
        "timing cache %s (%d bytes) refused by TensorRT (other version or device): starting empty",
        cache_path,
        len(data),
    )
    empty = config.create_timing_cache(b"")
    if empty is None or not config.set_timing_cache(empty, ignore_mismatch=False):
        raise ExportError(
            "TensorRT could not create an empty timing cache", fix=f"remove {cache_path} and retry"
        )
    info["refused"] = True
    return info


def save_timing_cache(config: Any, cache_path: Path, info: dict[str, Any]) -> None:
    """Write the builder's timing cache back atomically; an empty serialisation is not written."""
    cache = config.get_timing_cache()
    blob = bytes(memoryview(cache.serialize())) if cache is not None else b""
    info["bytes_out"] = len(blob)
    if not blob:
        log.warning("TensorRT returned an empty timing cache; %s left as it was", cache_path)
        return
    tmp = cache_path.with_name(cache_path.name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, cache_path)


def build_plan(
    trt: Any,
    onnx_path: Path,
    entry: Any,
    opts: BuildOptions,
    cache_path: Path,
    *,
    report: dict[str, Any] | None = None,
) -> bytes:
    """Parse the ONNX into a strongly typed network and build a serialized engine (TensorRT 10 API)."""
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = parser_errors(parser)
        for line in errors:
            log.error("ONNX parser: %s", line)
        raise ExportError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path}:\n  " + "\n  ".join(errors),
            fix="see docs/jetson.md for the opset/operator support of your TensorRT; re-export if needed",
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_bytes))
    if opts.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: keep parity with onnxruntime
    cache_info = attach_timing_cache(config, cache_path)
    profile = builder.create_optimization_profile()
    opt_batch = opts.opt_for(entry.name)
    for spec in entry.inputs:
        lo, opt, hi = profile_shapes(spec.shape, opts.max_batch, opt_batch)
        profile.set_shape(spec.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(
            f"TensorRT {trt.__version__} failed to build an engine from {onnx_path}",
            fix="read the TensorRT errors above; try --workspace-mib 512 or --precision fp32",
        )
    save_timing_cache(config, cache_path, cache_info)
    if report is not None:
        report.update({"timing_cache": cache_info, "opt_batch": opt_batch, "strongly_typed": True})
    return bytes(memoryview(plan))


def _set_aside(engine: Path) -> list[tuple[Path, Path]]:
    """Rename an existing engine and its sidecar to *.prev; return (kept, original) pairs."""
    from agent.inference.engine_meta import sidecar_path

    moved = []
    for original in (engine, sidecar_path(engine)):
        if original.exists():
            kept = original.with_name(original.name + ".prev")
            os.replace(original, kept)
            moved.append((kept, original))
    return moved


def build_engines(
    bundle_dir: Path,
    opts: BuildOptions,
    *,
    models: list[str] | None = None,
    public_key: Path | None = None,
    device_index: int = 0,
) -> list[Path]:
    """Build, check against the golden vectors, and record one engine per model. Returns engine paths."""
    import datetime as dt
    from dataclasses import asdict

    from agent.compat import UTC
    from agent.errors import GoldenMismatchError
    from agent.inference.cuda_mem import import_tensorrt
    from agent.inference.engine_meta import EngineSidecar, current_device, engine_path, sidecar_path
    from agent.inference.engine_meta import write_sidecar as write
    from agent.inference.manifest import ENGINE_DIR, model_entries, read_manifest, sha256_file
    from agent.inference.trt_backend import TrtBackend
    from agent.inference.verify import (
        compare_outputs,
        golden_reference,
        load_golden,
        verify_bundle,
        verify_files,
    )

    bundle_dir = Path(bundle_dir)
    if public_key is not None:
        verify_bundle(bundle_dir, public_key, golden=False)
    else:
        log.warning("no --public-key: %s is checked for integrity only, not for who signed it", bundle_dir)
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest)
    trt = import_tensorrt()
    device = current_device(device_index)  # raises BackendUnavailableError without a GPU
    entries = [e for e in model_entries(manifest) if models is None or e.name in models]
    if models and len(entries) != len(models):
        raise ExportError(
            f"--model {models}: not all are in the bundle", fix="use model names from the manifest"
        )
    (bundle_dir / ENGINE_DIR).mkdir(exist_ok=True)
    cache_path = bundle_dir / ENGINE_DIR / TIMING_CACHE
    written: list[Path] = []
    for entry in entries:
        variant = entry.variant_for("tensorrt", opts.precision)
        if variant is None:
            raise ExportError(
                f"{entry.name}: no {opts.precision} variant for TensorRT", fix="use --precision fp32"
            )
        onnx_path = bundle_dir / variant.file
        final = engine_path(bundle_dir, entry.name, variant.id)
        log.info("building %s from %s (%s)", final.name, onnx_path.name, asdict(opts))
        report: dict[str, Any] = {}
        plan = build_plan(trt, onnx_path, entry, opts, cache_path, report=report)
        previous = _set_aside(final)  # a working engine stays in place unless the new one passes
        final.write_bytes(plan)
        sidecar = EngineSidecar(
            model=entry.name,
            variant=variant.id,
            onnx_file=variant.file,
            onnx_sha256=sha256_file(onnx_path),
            engine_sha256=sha256_file(final),
            device=device,
            flags={**asdict(opts), **report},
            max_batch=opts.max_batch,
            built_at=dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        write(final, sidecar)
        try:
            backend = TrtBackend(
                bundle_dir, [entry], manifest["files"], precision=opts.precision, device=device
            )
            try:
                golden = load_golden(bundle_dir, entry)
                got = backend.run(entry.name, golden.inputs)
            finally:
                backend.close()
            want = golden_reference(golden, variant, bundle_dir / entry.golden_file)
            ratios = compare_outputs(got, want, variant.golden_tolerance, scale=opts.tolerance_scale)
            if not max(ratios.values()) <= 1.0:
                raise GoldenMismatchError(
                    f"{final}: TensorRT output disagrees with the bundle's golden outputs beyond "
                    f"tolerance (error / tolerance per output: {ratios}); the engine is not recorded",
                    fix="try --precision fp32; report the model if FP32 also disagrees",
                )
        except BaseException:
            final.unlink(missing_ok=True)
            sidecar_path(final).unlink(missing_ok=True)
            for kept, original in previous:
                os.replace(kept, original)
            raise
        for kept, _ in previous:
            kept.unlink()
        sidecar.golden_error_over_tolerance = ratios
        write(final, sidecar)
        log.info("engine %s recorded: golden error/tolerance %s", final, ratios)
        written.append(final)
    return written
