"""`agent-export engine BUNDLE_DIR`: build TensorRT 10 engines on the target device from the bundle's ONNX.

Runs on the Jetson itself (no torch import here): strongly typed network from the Q/DQ ONNX (or
weakly typed with FP16 allowed), timing cache, workspace limit, one optimisation profile for the
batch axis. The engine is written to BUNDLE_DIR/engines/ with a sidecar JSON, but only after the
golden vectors run through it reproduce the bundle's onnxruntime outputs within tolerance.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.errors import ExportError, GoldenMismatchError
from agent.inference.engine_meta import (
    EngineSidecar,
    current_device,
    engine_path,
    sidecar_path,
    write_sidecar,
)
from agent.inference.manifest import ENGINE_DIR, ModelEntry, model_entries, read_manifest, sha256_file
from agent.inference.verify import (
    compare_outputs,
    golden_reference,
    load_golden,
    verify_bundle,
    verify_files,
)

log = logging.getLogger(__name__)

TIMING_CACHE = "timing.cache"


@dataclass(frozen=True)
class BuildOptions:
    precision: str = "int8"  # int8: the Q/DQ variant made for TensorRT; fp32: the FP32 ONNX
    fp16: bool = False  # allow FP16 kernels -> weakly typed network with the FP16 flag
    workspace_bytes: int = 256 << 20
    max_batch: int = 8
    tolerance_scale: float = 1.0

    @property
    def strongly_typed(self) -> bool:
        return not self.fp16


def profile_shapes(shape: tuple[int | str, ...], max_batch: int) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes for an input whose axis 0 is 'batch' (opt = max: throughput at burst)."""
    if max_batch < 1:
        raise ExportError(f"--max-batch {max_batch} must be >= 1", fix="pass --max-batch 1 or more")
    rest = tuple(int(d) for d in shape[1:])
    return (1, *rest), (max_batch, *rest), (max_batch, *rest)


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


def build_plan(trt: Any, onnx_path: Path, entry: ModelEntry, opts: BuildOptions, cache_path: Path) -> bytes:
    """Parse the ONNX and build a serialized engine (TensorRT 10 builder API)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if opts.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
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
    if opts.fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        if opts.precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ layers in a weakly typed network
    elif opts.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: keep parity with onnxruntime
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for spec in entry.inputs:
        lo, opt, hi = profile_shapes(spec.shape, opts.max_batch)
        profile.set_shape(spec.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(
            f"TensorRT {trt.__version__} failed to build an engine from {onnx_path}",
            fix="read the TensorRT errors above; try --workspace-mib 512 or --precision fp32",
        )
    tmp = cache_path.with_name(cache_path.name + ".tmp")
    tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    os.replace(tmp, cache_path)
    return bytes(memoryview(plan))


def _set_aside(engine: Path) -> list[tuple[Path, Path]]:
    """Rename an existing engine and its sidecar to *.prev; return (kept, original) pairs."""
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
    from agent.inference.cuda_mem import import_tensorrt
    from agent.inference.trt_backend import TrtBackend

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
        plan = build_plan(trt, onnx_path, entry, opts, cache_path)
        previous = _set_aside(final)  # a working engine stays in place unless the new one passes
        final.write_bytes(plan)
        sidecar = EngineSidecar(
            model=entry.name,
            variant=variant.id,
            onnx_file=variant.file,
            onnx_sha256=sha256_file(onnx_path),
            engine_sha256=sha256_file(final),
            device=device,
            flags={**asdict(opts), "strongly_typed": opts.strongly_typed},
            max_batch=opts.max_batch,
            built_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        write_sidecar(final, sidecar)
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
                    f"{final}: TensorRT output disagrees with onnxruntime on the golden vectors beyond "
                    "tolerance "
                    f"(error / tolerance per output: {ratios}); the engine is not recorded",
                    fix="try --precision fp32, or without --fp16; report the model if FP32 also disagrees",
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
        write_sidecar(final, sidecar)
        log.info("engine %s recorded: golden error/tolerance %s", final, ratios)
        written.append(final)
    return written
