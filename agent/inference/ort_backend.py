"""onnxruntime backend: CPU by default, the CUDA provider where this onnxruntime build has it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agent.errors import BackendUnavailableError, BundleSchemaError
from agent.inference.backend import check_inputs
from agent.inference.manifest import ModelEntry, TensorSpec, Variant

log = logging.getLogger(__name__)

RUNTIME = "onnxruntime"
_ORT_DTYPES = {"tensor(float)": "float32"}


def choose_providers(use_cuda: bool) -> list[str]:
    available = ort.get_available_providers()
    if use_cuda and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def make_session(path: Path, *, threads: int, providers: Sequence[str]) -> ort.InferenceSession:
    """A session for a small, steady footprint: no CPU arena (it keeps the largest activations for
    good) and no memory-pattern planning (with the arena off it allocates more, measured in
    bench/bench_memory.py); the run time cost is within the noise of a shared machine."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.enable_mem_pattern = False
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise BundleSchemaError(
            f"{path}: onnxruntime cannot load this ONNX file ({exc})",
            fix="the file passed its sha256 check, so it was built broken: rebuild the bundle",
        ) from exc


def _compare(kind: str, specs: Sequence[TensorSpec], args: Sequence[ort.NodeArg], path: Path) -> None:
    got = [(a.name, list(a.shape), _ORT_DTYPES.get(a.type, a.type)) for a in args]
    want = [(s.name, list(s.shape), s.dtype) for s in specs]
    if [g[0] for g in got] != [w[0] for w in want]:
        raise BundleSchemaError(
            f"{path}: ONNX {kind} names {[g[0] for g in got]} differ from the manifest "
            f"{[w[0] for w in want]}",
            fix="the manifest and ONNX come from different exports: rebuild the bundle",
        )
    for (name, gshape, gtype), (_, wshape, wtype) in zip(got, want, strict=True):
        if gtype != wtype:
            raise BundleSchemaError(
                f"{path}: ONNX {kind} {name!r} has dtype {gtype}, manifest says {wtype}",
                fix="rebuild the bundle",
            )
        if len(gshape) != len(wshape):
            raise BundleSchemaError(
                f"{path}: ONNX {kind} {name!r} has shape {gshape}, manifest says {wshape}",
                fix="rebuild the bundle",
            )
        for g, w in zip(gshape, wshape, strict=True):
            if w == "batch":
                if isinstance(g, int):
                    raise BundleSchemaError(
                        f"{path}: ONNX {kind} {name!r} has a fixed batch axis {gshape}; "
                        "manifest says dynamic",
                        fix="re-export with a dynamic batch axis",
                    )
            elif g != w:
                raise BundleSchemaError(
                    f"{path}: ONNX {kind} {name!r} has shape {gshape}, manifest says {wshape}",
                    fix="the manifest disagrees with the ONNX graph: rebuild the bundle",
                )


def check_session_against_manifest(session: ort.InferenceSession, entry: ModelEntry, path: Path) -> None:
    """Names, dtypes and static shapes of the ONNX graph must equal the manifest; features must fit."""
    _compare("input", entry.inputs, session.get_inputs(), path)
    _compare("output", entry.outputs, session.get_outputs(), path)
    n_features = entry.inputs[0].shape[entry.feature_axis]
    if n_features != len(entry.feature_names):
        raise BundleSchemaError(
            f"{path}: manifest lists {len(entry.feature_names)} feature names "
            f"{list(entry.feature_names)} but "
            f"input {entry.inputs[0].name!r} has {n_features} on axis {entry.feature_axis}",
            fix="feature names/order must come from the same training run as the ONNX: rebuild the bundle",
        )


class OrtBackend:
    """One InferenceSession per model, for the variant made for onnxruntime at `precision`."""

    name = RUNTIME

    def __init__(
        self,
        bundle_dir: Path,
        entries: Sequence[ModelEntry],
        *,
        precision: str = "int8",
        threads: int = 1,
        use_cuda: bool = True,
    ) -> None:
        self.precision = precision
        self.providers = choose_providers(use_cuda)
        self._entries = {e.name: e for e in entries}
        self._variants: dict[str, Variant] = {}
        self._sessions: dict[str, ort.InferenceSession] = {}
        for entry in entries:
            variant = entry.variant_for(RUNTIME, precision)
            if variant is None:
                raise BackendUnavailableError(
                    f"bundle {bundle_dir} has no {precision} variant of model {entry.name!r} for onnxruntime",
                    fix="set inference.precision to one the bundle has (fp32 is always present)",
                )
            path = Path(bundle_dir) / variant.file
            session = make_session(path, threads=threads, providers=self.providers)
            check_session_against_manifest(session, entry, path)
            self._variants[entry.name] = variant
            self._sessions[entry.name] = session
        log.info(
            "onnxruntime backend: %s, precision %s, %d thread(s), providers %s",
            ", ".join(f"{k}={v.id}" for k, v in self._variants.items()),
            precision,
            threads,
            self.providers,
        )

    def variant_id(self, model_name: str) -> str:
        return self._variants[model_name].id

    def run(self, model_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model_name not in self._sessions:
            raise BackendUnavailableError(
                f"model {model_name!r} is not loaded (loaded: {sorted(self._sessions)})",
                fix="use a model name from the bundle manifest",
            )
        entry = self._entries[model_name]
        feed = check_inputs(entry, inputs)
        names = [o.name for o in entry.outputs]
        results = self._sessions[model_name].run(names, feed)
        return {n: np.asarray(r) for n, r in zip(names, results, strict=True)}

    def close(self) -> None:
        self._sessions.clear()
