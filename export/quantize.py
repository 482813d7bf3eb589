"""INT8 in the graph: onnxruntime static quantization to Q/DQ, calibrated on real training inputs.

Two variants (docs/int8.md):
- ``int8_trt``: activations int8 *symmetric* per tensor, weights int8 symmetric per channel. This is
  what TensorRT 10 explicit quantization consumes (zero points must be 0).
- ``int8_ort``: activations uint8 asymmetric per tensor, onnxruntime's CPU path (TensorRT cannot use
  it); weights int8 symmetric 7-bit (u8s8) for the U-Net, uint8 asymmetric 8-bit (u8u8) otherwise.

No variant depends on the CPU's instruction set: onnxruntime's u8s8 kernels on x86 without VNNI
(AVX2, AVX-512 without VNNI) multiply with VPMADDUBSW, which adds two u8 x s8 products in int16 and
saturates above 32767 (255 x 127 x 2 = 64770 can), so the same graph gave different numbers on VNNI,
AVX2 and ARM machines. Per onnxruntime's quantization guide the remedies are reduce_range or U8U8:
- s8 symmetric weights in a **7-bit range** (``reduce_range``, |q| <= 64): a VPMADDUBSW pair is at
  most 255 x 64 x 2 = 32640 <= 32767, so it never saturates; VNNI (VPDPBUSD) and AMX (TDPBUSD)
  accumulate u8 x s8 in int32, and onnxruntime names no saturating ARM path (not measured on ARM).
  ``int8_trt`` always uses them (TensorRT needs symmetric s8). ``int8_ort`` uses them for the U-Net
  (task ``susceptibility_map``, :func:`schemes_for`): onnxruntime's u8s8 convolution kernels ran the
  demo U-Net 1.6-2.4x faster than u8u8 on a Sapphire Rapids (AVX512-VNNI, AMX) at 1 thread at the
  same Dice (docs/performance.md section 4).
- **u8 weights** (asymmetric per channel, 8 bits; u8 x u8 kernels widen to 16 bits before multiplying
  and never saturate) for ``int8_ort`` of every other model (the displacement network: 17 us per
  window either way, and 7-bit weights raised its error on heavy-tailed features, docs/int8.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from agent.errors import ExportError
from export.onnx_export import ort_outputs

log = logging.getLogger(__name__)

HEAD_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose")
# Ops a head's result may pass through on its way to a graph output.
PASS_THROUGH = (
    "Sigmoid",
    "Softmax",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Identity",
    "Transpose",
    "Add",
)
# Keep a node in FP32 when that lowers the worst output error score to <= this fraction of before ...
EXCLUDE_GAIN = 0.7
# ... and the score before was above this (p99 |int8 - fp32| / std(fp32) per output).
EXCLUDE_MIN_SCORE = 0.02


@dataclass(frozen=True)
class QuantScheme:
    variant_id: str
    runtimes: tuple[str, ...]
    activation_type: QuantType
    activation_symmetric: bool
    description_activations: str
    quantize_bias: bool  # int32 bias DQ: onnxruntime fuses it; TensorRT keeps biases in float
    description_weights: str
    weight_type: QuantType
    weight_symmetric: bool
    reduce_range: bool  # 7-bit weights


SCHEMES: dict[str, QuantScheme] = {
    "int8_trt": QuantScheme(
        "int8_trt",
        ("tensorrt",),
        QuantType.QInt8,
        True,
        "int8 symmetric per-tensor",
        quantize_bias=False,
        description_weights="int8 symmetric per-channel, 7-bit range (reduce_range: no u8s8 saturation)",
        weight_type=QuantType.QInt8,
        weight_symmetric=True,
        reduce_range=True,
    ),
    "int8_ort": QuantScheme(
        "int8_ort",
        ("onnxruntime",),
        QuantType.QUInt8,
        False,
        "uint8 asymmetric per-tensor",
        quantize_bias=True,
        description_weights="uint8 asymmetric per-channel, 8-bit (u8u8 kernels: no saturation)",
        weight_type=QuantType.QUInt8,
        weight_symmetric=False,
        reduce_range=False,
    ),
}
# int8_ort of a conv net: u8 activations x s8 7-bit symmetric weights (u8s8 kernels, no saturation).
ORT_S8_WEIGHTS = dataclasses.replace(
    SCHEMES["int8_ort"],
    description_weights="int8 symmetric per-channel, 7-bit range (u8s8 kernels; 255 x 64 x 2 <= 32767: "
    "no saturation)",
    weight_type=QuantType.QInt8,
    weight_symmetric=True,
    reduce_range=True,
)
S8_WEIGHT_TASKS = frozenset({"susceptibility_map"})


def schemes_for(task: str) -> dict[str, QuantScheme]:
    """The INT8 variants a model of ``task`` ships: int8_ort with s8 7-bit weights for the U-Net
    (measured faster, docs/performance.md section 4), u8 weights for the rest; int8_trt for all."""
    if task in S8_WEIGHT_TASKS:
        return {**SCHEMES, "int8_ort": ORT_S8_WEIGHTS}
    return dict(SCHEMES)


class _Reader(CalibrationDataReader):
    def __init__(self, inputs: dict[str, np.ndarray], batch: int = 16) -> None:
        self._inputs = inputs
        self._batch = batch
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    def _gen(self) -> Iterator[dict[str, np.ndarray]]:
        n = int(next(iter(self._inputs.values())).shape[0])
        for start in range(0, n, self._batch):
            yield {
                k: np.ascontiguousarray(v[start : start + self._batch], dtype=np.float32)
                for k, v in self._inputs.items()
            }

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = self._gen()
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None


def preprocess(fp32_path: Path, out_path: Path) -> Path:
    """Shape inference + onnxruntime graph optimisation (folds BatchNorm into Conv) before quantizing."""
    fp32_path, out_path = Path(fp32_path).resolve(), Path(out_path).resolve()
    try:
        # onnxruntime dumps `sym_shape_infer_temp.onnx` (+ external data) into the CWD when symbolic
        # inference gives up: run it in a scratch directory so nothing lands in the user's folder.
        with tempfile.TemporaryDirectory(prefix="lews-shape-") as scratch, contextlib.chdir(scratch):
            quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    except Exception as first:  # symbolic inference gives up on e.g. Resize with a dynamic batch
        log.info(
            "symbolic shape inference failed on %s (%s); using ONNX shape inference only", fp32_path, first
        )
        try:
            quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
        except Exception as exc:  # onnxruntime raises several types here
            raise ExportError(
                f"{fp32_path}: quantization pre-processing failed ({exc})", fix="check the FP32 export"
            ) from exc
    proto = onnx.load(str(out_path))
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    onnx.save_model(proto, str(out_path))
    return out_path


OUTPUT_ACTIVATIONS = ("Sigmoid", "Softmax")


def output_activation_ops(path: Path) -> list[str]:
    """Op types (Sigmoid/Softmax) that produce a graph output: probabilities compared with thresholds."""
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    ops = {producer[o.name].op_type for o in graph.output if o.name in producer}
    return sorted(ops & set(OUTPUT_ACTIVATIONS))


def candidate_nodes(path: Path) -> list[tuple[str, str]]:
    """Nodes worth keeping in FP32, in trial order, with their role:

    - "input": the first Gemm/MatMul/Conv on each graph input (its per-tensor input scale must cover
      every feature's range, so heavy-tailed features leave few int8 levels to the others);
    - "head": the last Gemm/MatMul/Conv on the way to each graph output (through pass-through ops).
    """
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    inits = {i.name for i in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    found: list[tuple[str, str]] = []
    for node in graph.node:
        if node.op_type in HEAD_OPS and any(i in graph_inputs for i in node.input):
            found.append((node.name, "input"))
    for output in graph.output:
        head = producer.get(output.name)
        while head is not None and head.op_type in PASS_THROUGH:
            dynamic = [i for i in head.input if i and i not in inits and i in producer]
            head = producer.get(dynamic[0]) if len(dynamic) == 1 else None
        if head is not None and head.op_type in HEAD_OPS and head.name not in [n for n, _ in found]:
            found.append((head.name, "head"))
    return found


def quantize(
    pre_path: Path,
    out_path: Path,
    calib: dict[str, np.ndarray],
    scheme: QuantScheme,
    exclude: list[str],
    float_output_ops: list[str] | None = None,
) -> Path:
    try:
        quantize_static(
            str(pre_path),
            str(out_path),
            _Reader(calib),
            quant_format=QuantFormat.QDQ,
            activation_type=scheme.activation_type,
            weight_type=scheme.weight_type,
            per_channel=True,
            reduce_range=scheme.reduce_range,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(exclude),
            extra_options={
                "ActivationSymmetric": scheme.activation_symmetric,
                "WeightSymmetric": scheme.weight_symmetric,
                "DedicatedQDQPair": False,
                "QuantizeBias": scheme.quantize_bias,
                "OpTypesToExcludeOutputQuantization": list(float_output_ops or []),
            },
        )
    except Exception as exc:  # onnxruntime.quantization raises plain exceptions
        raise ExportError(
            f"{pre_path}: static quantization ({scheme.variant_id}) failed: {exc}", fix="report it"
        ) from exc
    return out_path


def error_scores(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: MAE, p99 and max |got-ref|, each divided by std(ref) (so comparable across outputs)."""
    scores = {}
    for name, r in ref.items():
        d = np.abs(got[name].astype(np.float64) - r)
        sd = float(np.std(r)) or 1.0
        scores[name] = {
            "mae_over_std": float(d.mean() / sd),
            "p99_over_std": float(np.quantile(d, 0.99) / sd),
            "max_over_std": float(d.max() / sd),
        }
    return scores


def _worst(scores: dict[str, dict[str, float]]) -> float:
    return max(s["p99_over_std"] for s in scores.values())


@dataclass
class QuantResult:
    path: Path
    scheme: QuantScheme
    nodes_excluded: list[str]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    float_output_ops: list[str] = field(default_factory=list)

    def manifest_block(self, calibration_count: int) -> dict[str, Any]:
        return {
            "format": "QDQ",
            "activations": self.scheme.description_activations,
            "weights": self.scheme.description_weights,
            "bias": "int32 (DequantizeLinear)" if self.scheme.quantize_bias else "float32",
            "calibration_method": "MinMax",
            "calibration_count": calibration_count,
            "nodes_excluded": self.nodes_excluded,
            "outputs_not_quantized_of_ops": self.float_output_ops,
            "decisions": self.decisions,
            "error_vs_fp32_on_calibration": self.scores,
        }


def quantize_with_decisions(
    fp32_path: Path,
    out_path: Path,
    calib: dict[str, np.ndarray],
    scheme: QuantScheme,
    *,
    eval_count: int = 256,
) -> QuantResult:
    """Quantize all nodes, then keep a candidate in float only where measured error says so."""
    evals = {k: v[:eval_count] for k, v in calib.items()}
    ref = ort_outputs(fp32_path, evals)
    with tempfile.TemporaryDirectory(prefix="lews-quant-") as tmp:
        pre = preprocess(fp32_path, Path(tmp) / "pre.onnx")
        excluded: list[str] = []
        float_ops: list[str] = []
        trial = Path(tmp) / "trial.onnx"
        quantize(pre, trial, calib, scheme, excluded, float_ops)
        scores = error_scores(ref, ort_outputs(trial, evals))
        decisions: list[dict[str, Any]] = [
            {"nodes_excluded": [], "p99_over_std": _worst(scores), "kept": True}
        ]
        # trial order: probability outputs in float, then input convs, then heads
        candidates = [(op, "output") for op in output_activation_ops(pre)] + candidate_nodes(pre)
        for name, role in candidates:
            cand_nodes = excluded if role == "output" else [*excluded, name]
            cand_ops = [*float_ops, name] if role == "output" else float_ops
            quantize(pre, trial, calib, scheme, cand_nodes, cand_ops)
            cand_scores = error_scores(ref, ort_outputs(trial, evals))
            before, after = _worst(scores), _worst(cand_scores)
            keep = before > EXCLUDE_MIN_SCORE and after <= EXCLUDE_GAIN * before
            decisions.append(
                {
                    "node": name,
                    "role": role,
                    "action": ("keep output float" if role == "output" else "keep FP32")
                    if keep
                    else "quantize",
                    "p99_over_std_quantized": before,
                    "p99_over_std_if_fp32": after,
                    "rule": f"keep FP32 if score > {EXCLUDE_MIN_SCORE} and falls to <= {EXCLUDE_GAIN}x",
                }
            )
            if keep:
                excluded, float_ops, scores = cand_nodes, cand_ops, cand_scores
        quantize(pre, out_path, calib, scheme, excluded, float_ops)
    final = error_scores(ref, ort_outputs(out_path, evals))
    log.info("%s: %s excluded=%s error=%s", out_path.name, scheme.variant_id, excluded, final)
    return QuantResult(out_path, scheme, excluded, decisions, final, float_ops)


def count_qdq(path: Path) -> dict[str, int]:
    """How many ops of each kind, and how many Conv/Gemm/MatMul have a DequantizeLinear on their weight."""
    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    counts: dict[str, int] = {
        "compute_nodes": 0,
        "compute_nodes_int8": 0,
        "QuantizeLinear": 0,
        "DequantizeLinear": 0,
    }
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            counts[node.op_type] += 1
        if node.op_type in HEAD_OPS:
            counts["compute_nodes"] += 1
            w = producer.get(node.input[1]) if len(node.input) > 1 else None
            if w is not None and w.op_type == "DequantizeLinear":
                counts["compute_nodes_int8"] += 1
    return counts
