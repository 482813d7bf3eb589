"""The one interface every inference backend implements, and the input checks they share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from agent.errors import InferenceInputError
from agent.inference.manifest import ModelEntry


class Backend(Protocol):
    """`run(model, {input: array}) -> {output: array}`; `close()` frees the runtime (idempotent)."""

    name: str  # "onnxruntime" | "tensorrt"
    precision: str  # "fp32" | "int8"

    def run(self, model_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def variant_id(self, model_name: str) -> str: ...

    def close(self) -> None: ...


def check_inputs(entry: ModelEntry, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate inputs against the manifest entry; return contiguous float32 arrays in manifest order.

    Raises InferenceInputError naming the input and what is wrong: missing/unknown names, rank or
    non-batch dimension mismatch, non-finite values (the models were never trained on NaN).
    """
    expected = {t.name: t for t in entry.inputs}
    unknown = sorted(set(inputs) - set(expected))
    missing = sorted(set(expected) - set(inputs))
    if unknown or missing:
        raise InferenceInputError(
            f"model {entry.name!r}: inputs {sorted(inputs)} do not match the manifest {sorted(expected)}"
            f" (missing {missing}, unknown {unknown})",
            fix="build inputs with the feature functions of this bundle version",
        )
    out: dict[str, np.ndarray] = {}
    batch: int | None = None
    for name, spec in expected.items():
        arr = np.asarray(inputs[name])
        if arr.ndim != len(spec.shape):
            raise InferenceInputError(
                f"model {entry.name!r} input {name!r}: rank {arr.ndim}, manifest shape {list(spec.shape)}",
                fix="add the batch axis (axis 0) and keep the manifest's axis order",
            )
        for axis, (got, want) in enumerate(zip(arr.shape, spec.shape, strict=True)):
            if want != "batch" and got != want:
                raise InferenceInputError(
                    f"model {entry.name!r} input {name!r}: axis {axis} is {got}, manifest says {want}"
                    f" (shape {list(arr.shape)} vs {list(spec.shape)})",
                    fix="check the window length / tile size / feature count against the bundle manifest",
                )
        if arr.shape[0] < 1:
            raise InferenceInputError(
                f"model {entry.name!r} input {name!r}: empty batch", fix="pass >= 1 row"
            )
        if batch is not None and arr.shape[0] != batch:
            raise InferenceInputError(
                f"model {entry.name!r}: inputs disagree on batch size",
                fix="stack the same rows for every input",
            )
        batch = int(arr.shape[0])
        arr32 = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr32).all():
            raise InferenceInputError(
                f"model {entry.name!r} input {name!r}: {int((~np.isfinite(arr32)).sum())} non-finite values",
                fix="fill or drop incomplete windows before inference (the feature builder reports "
                "completeness)",
            )
        out[name] = arr32
    return out
