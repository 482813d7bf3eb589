"""FP32 ONNX export of a trained network: dynamo exporter, dynamic batch, checker, onnxslim, torch parity."""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from agent.errors import ExportError
from export.runs import ExportModel

log = logging.getLogger(__name__)

# torch 2.13's exporter emits opset 18 by default; TensorRT 10.0's ONNX parser reads opsets 9-20
# (docs/jetson.md), onnxruntime 1.31 up to 23. Pin it so a torch upgrade cannot silently raise it.
OPSET = 18
# |onnxruntime - torch| allowed after export, FP32 on the same CPU.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3


@dataclass
class ExportReport:
    path: Path
    opset: int
    nodes_before_slim: int
    nodes_after_slim: int
    slim_used: bool
    parity_max_abs: dict[str, float]  # output -> max |ort - torch| on the checked inputs
    parity_count: int

    def as_dict(self) -> dict[str, object]:
        return {
            "opset": self.opset,
            "nodes_before_slim": self.nodes_before_slim,
            "nodes_after_slim": self.nodes_after_slim,
            "onnxslim": self.slim_used,
            "torch_parity_max_abs": self.parity_max_abs,
            "torch_parity_inputs": self.parity_count,
        }


def torch_outputs(model: ExportModel, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args = tuple(
        torch.from_numpy(np.ascontiguousarray(inputs[n], dtype=np.float32)) for n in model.input_names
    )
    with torch.inference_mode():
        out = model.module(*args)
    outs = out if isinstance(out, tuple | list) else (out,)
    if len(outs) != len(model.output_names):
        raise ExportError(
            f"model {model.name!r} returns {len(outs)} tensors but names {len(model.output_names)} outputs",
            fix="make output_names match the module's forward() return values",
        )
    return {
        n: o.detach().cpu().numpy().astype(np.float32) for n, o in zip(model.output_names, outs, strict=True)
    }


def ort_outputs(path: Path, inputs: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
    return dict(zip(names, sess.run(names, feed), strict=True))


def _subset(inputs: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: v[:n] for k, v in inputs.items()}


def _dynamo_export(model: ExportModel, example: dict[str, np.ndarray]) -> onnx.ModelProto:
    args = tuple(
        torch.from_numpy(np.ascontiguousarray(example[n], dtype=np.float32)) for n in model.input_names
    )
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic_shapes = tuple({0: batch} for _ in model.input_names)
    model.module.eval()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):  # the exporter prints progress lines
            program = torch.onnx.export(
                model.module,
                args,
                input_names=list(model.input_names),
                output_names=list(model.output_names),
                dynamic_shapes=dynamic_shapes,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
    except Exception as exc:  # torch.export raises many types; report them as one export failure
        raise ExportError(
            f"torch.onnx.export (dynamo) failed for model {model.name!r}: {exc}",
            fix="the module must be traceable by torch.export (no data-dependent Python control flow)",
        ) from exc
    if program is None:
        raise ExportError(
            f"torch.onnx.export returned nothing for {model.name!r}", fix="upgrade torch/onnxscript"
        )
    proto: onnx.ModelProto = program.model_proto
    return proto


def _name_batch_axes(proto: onnx.ModelProto) -> None:
    for vi in list(proto.graph.input) + list(proto.graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        if dim0.HasField("dim_param") or not dim0.HasField("dim_value"):
            dim0.dim_param = "batch"


def export_onnx(model: ExportModel, path: Path, *, slim: bool = True, parity_count: int = 64) -> ExportReport:
    """Export `model` to `path` (FP32), check it, simplify it, and compare with torch on real inputs."""
    path = Path(path)
    example = _subset(model.calibration_inputs, 2)
    if any(v.shape[0] < 2 for v in example.values()):
        raise ExportError(
            f"model {model.name!r}: need at least 2 calibration samples to export with a dynamic batch",
            fix="give the run more training windows/tiles",
        )
    proto = _dynamo_export(model, example)
    _name_batch_axes(proto)
    nodes_before = len(proto.graph.node)
    slim_used = False
    if slim:
        try:
            import onnxslim

            slimmed = onnxslim.slim(proto)
            if isinstance(slimmed, onnx.ModelProto) and len(slimmed.graph.node) <= nodes_before:
                proto, slim_used = slimmed, True
        except Exception as exc:  # onnxslim is an optimisation only; keep the checked original
            log.warning("onnxslim failed on %s (%s); keeping the unslimmed graph", model.name, exc)
    _name_batch_axes(proto)
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(
            f"onnx.checker rejects the export of {model.name!r}: {exc}", fix="report a bug"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    check = _subset(model.calibration_inputs, parity_count)
    want = torch_outputs(model, check)
    got = ort_outputs(path, check)
    worst: dict[str, float] = {}
    for name, ref in want.items():
        diff = np.abs(got[name] - ref)
        worst[name] = float(diff.max())
        if not np.all(diff <= PARITY_ATOL + PARITY_RTOL * np.abs(ref)):
            raise ExportError(
                f"{path}: onnxruntime output {name!r} differs from torch by up to {worst[name]:.3g} "
                f"on {len(ref)} calibration inputs",
                fix="an operator exported wrongly; try --no-slim or report the model to the toolchain owner",
            )
    log.info(
        "exported %s -> %s (opset %d, %d->%d nodes, torch parity %s)",
        model.name,
        path,
        OPSET,
        nodes_before,
        len(proto.graph.node),
        worst,
    )
    n_checked = int(next(iter(check.values())).shape[0])
    return ExportReport(path, OPSET, nodes_before, len(proto.graph.node), slim_used, worst, n_checked)
