"""The INT8 U-Net against the machine's INT8 peak and torch eager FP32, one thread, one run.

    .venv/bin/python bench/bench_unet.py [--base 32] [--depth 1] [--s2d 4] [--batch 2]
        [--min-seconds 1] [--json OUT]

In ONE process, one intra-op thread everywhere (torch.set_num_threads(1), onnxruntime intra 1):

1. INT8 GEMM peak: onnxruntime ``MatMulInteger`` (uint8 x int8 -> int32) at 2048^3, ops = 2 M N K.
2. For each re-parameterisation of the hybrid convs (``two3x3``: a 3x3 + a dilated 3x3 conv + add,
   no zero taps, what bundles export; ``5x5``: one 5x5 conv with 32 % structurally zero taps): the
   demo architecture (enhanced U-Net, 7 x 128 x 128 tiles) with random weights and randomised
   BatchNorm statistics (speed does not depend on the values) is re-parameterised, exported to ONNX,
   quantized with the bundle's ``int8_ort`` scheme for the U-Net (u8 activations, s8 7-bit weights:
   ``export.quantize.schemes_for``) and, for comparison, with u8 weights (``ort_int8_u8u8``, the
   scheme before; calibrated on 16 random tiles), and timed: torch eager FP32 (the re-parameterised
   module), onnxruntime FP32 and INT8, tiles/s at ``--batch``, all timed in turns with the GEMM peak
   (round robin: the ratios hold when the machine's load changes). MACs per tile
   are counted on the re-parameterised module (conv and transposed conv layers: the real work).
   ``int8_share_of_peak`` = 2 x MACs x tiles/s / peak ops/s; ``int8_vs_torch`` = INT8 tiles/s over
   torch eager FP32 tiles/s; ``mask_dice_int8_vs_fp32``: Dice of the INT8 mask (p >= 0.5) against the
   FP32 mask on the timing tiles (quantization fidelity; NOT a skill score: the weights are random).
Every figure carries the load average when it was taken; the machine may be shared (lower bounds).
Last stdout line: one JSON object.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import typer
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlib import load

from export.make_default_bundle import UNET_BASE, UNET_DEPTH, UNET_S2D
from export.quantize import SCHEMES, output_activation_ops, preprocess, quantize, schemes_for
from export.unet.model import UNet, count_flops
from export.unet.reparam import EXPORT_HYBRID, HYBRID_FORMS, reparameterise

GEMM = 2048


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _time_round_robin(
    fns: dict[str, Callable[[], object]], min_seconds: float, min_runs: int = 3
) -> dict[str, float]:
    """Median seconds per call of each function, timed in turns (a, b, c, a, b, c, ...): a change of
    the machine's load hits all of them alike, so their ratios hold even on a shared machine."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    t_end = time.perf_counter() + min_seconds * len(fns)
    while min(len(v) for v in times.values()) < min_runs or time.perf_counter() < t_end:
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def gemm_session(tmp: Path) -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [GEMM, GEMM])
    b = helper.make_tensor_value_info("b", TensorProto.INT8, [GEMM, GEMM])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [GEMM, GEMM])
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "peak", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = tmp / "matmulinteger.onnx"
    onnx.save(model, str(path))
    rng = np.random.default_rng(0)
    feeds = {
        "a": rng.integers(0, 255, (GEMM, GEMM), dtype=np.uint8),
        "b": rng.integers(-127, 127, (GEMM, GEMM), dtype=np.int8),
    }
    return _session(path), feeds


def _randomise_bn(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None:
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


class _Prob(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    inter, total = float(np.logical_and(a, b).sum()), float(a.sum() + b.sum())
    return 1.0 if total == 0 else 2 * inter / total


def build_variant(
    hybrid: str, base: int, depth: int, batch: int, tmp: Path, stem: int = 0, s2d: int = 1
) -> dict[str, Any]:
    """The re-parameterised torch module, its FP32 and INT8 sessions, its MACs per tile, an input."""
    torch.manual_seed(0)
    net = UNet(7, base=base, depth=depth, variant="enhanced", stem=stem, s2d=s2d)
    _randomise_bn(net, 1)
    net.eval()
    model = _Prob(reparameterise(net, hybrid)).eval()
    x = np.random.default_rng(2).random((batch, 7, 128, 128), dtype=np.float32)
    fp32 = tmp / f"unet_{hybrid}.fp32.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.from_numpy(x),),
            str(fp32),
            input_names=["tiles"],
            output_names=["probability"],
            dynamic_axes={"tiles": {0: "batch"}, "probability": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    pre = preprocess(fp32, tmp / f"unet_{hybrid}.pre.onnx")
    calib = {"tiles": np.random.default_rng(3).random((16, 7, 128, 128), dtype=np.float32)}
    float_ops = output_activation_ops(pre)
    scheme = schemes_for("susceptibility_map")["int8_ort"]
    int8 = quantize(pre, tmp / f"unet_{hybrid}.int8.onnx", calib, scheme, [], float_ops)
    u8u8 = quantize(pre, tmp / f"unet_{hybrid}.u8u8.onnx", calib, SCHEMES["int8_ort"], [], float_ops)
    return {
        "model": model,
        "macs": count_flops(model.net) // 2,
        "x": x,
        "s32": _session(fp32),
        "s8": _session(int8),
        "u8u8": _session(u8u8),
    }


def run(base: int, depth: int, batch: int, min_seconds: float, stem: int = 0, s2d: int = 1) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    with tempfile.TemporaryDirectory(prefix="lews-bench-unet-") as d:
        tmp = Path(d)
        gemm, feeds = gemm_session(tmp)
        built = {h: build_variant(h, base, depth, batch, tmp, stem, s2d) for h in HYBRID_FORMS}
        fns: dict[str, Callable[[], object]] = {"peak": lambda: gemm.run(None, feeds)}
        for h, v in built.items():
            xt = torch.from_numpy(v["x"])
            fns[f"{h}/torch_eager_fp32"] = functools.partial(_no_grad, v["model"], xt)
            fns[f"{h}/ort_fp32"] = functools.partial(v["s32"].run, None, {"tiles": v["x"]})
            fns[f"{h}/ort_int8"] = functools.partial(v["s8"].run, None, {"tiles": v["x"]})
            fns[f"{h}/ort_int8_u8u8"] = functools.partial(v["u8u8"].run, None, {"tiles": v["x"]})
        load_before = load()
        sec = _time_round_robin(fns, min_seconds)
        load_after = load()
    peak_gops = 2 * GEMM**3 / sec["peak"] / 1e9
    variants: dict[str, Any] = {}
    for h, v in built.items():
        kinds = ("torch_eager_fp32", "ort_fp32", "ort_int8", "ort_int8_u8u8")
        tps = {k: batch / sec[f"{h}/{k}"] for k in kinds}
        p32 = v["s32"].run(None, {"tiles": v["x"]})[0]
        p8 = v["s8"].run(None, {"tiles": v["x"]})[0]
        gops = 2 * v["macs"] * tps["ort_int8"] / 1e9
        variants[h] = {
            "macs_per_tile": v["macs"],
            "tiles_per_s": {k: round(t, 2) for k, t in tps.items()},
            "int8_gops": round(gops, 2),
            "int8_share_of_peak": round(gops / peak_gops, 3),
            "int8_vs_torch": round(tps["ort_int8"] / tps["torch_eager_fp32"], 2),
            "int8_vs_ort_fp32": round(tps["ort_int8"] / tps["ort_fp32"], 2),
            "int8_vs_u8u8": round(tps["ort_int8"] / tps["ort_int8_u8u8"], 2),
            "mask_dice_int8_vs_fp32": round(_dice(p8 >= 0.5, p32 >= 0.5), 4),
            "max_abs_prob_diff": round(float(np.abs(p8 - p32).max()), 4),
        }
    return {
        "benchmark": "unet",
        "architecture": f"enhanced U-Net, base {base}, stem {stem or base}, depth {depth}, "
        f"space-to-depth {s2d}, 7 x 128 x 128 tiles, batch {batch}",
        "weights": "random (speed only); mask Dice = INT8 vs FP32 fidelity, not skill",
        "threads": 1,
        "timing": "round robin over every function (ratios hold under changing load)",
        "int8_gemm_peak_gops": round(peak_gops, 2),
        "variants": variants,
        "exported": EXPORT_HYBRID,
        "int8_scheme": scheme_description(),
        "load": {"before": load_before, "after": load_after},
    }


def scheme_description() -> str:
    s = schemes_for("susceptibility_map")["int8_ort"]
    return f"int8_ort for the U-Net: activations {s.description_activations}, weights {s.description_weights}"


def _no_grad(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out: torch.Tensor = model(x)
    return out


def main(
    base: int = typer.Option(UNET_BASE, help="U-Net base width (default: the demo bundle's)."),
    depth: int = typer.Option(UNET_DEPTH, help="U-Net depth (default: the demo bundle's)."),
    stem: int = typer.Option(0, help="Width of the first stage (0: the base width)."),
    s2d: int = typer.Option(
        UNET_S2D, help="Space-to-depth factor of the input (1: none; default: the demo bundle's)."
    ),
    batch: int = typer.Option(2, help="Tiles per run (the daemon's risk map: 2)."),
    min_seconds: float = typer.Option(1.0, help="Time each measurement at least this long."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
) -> None:
    result = run(base, depth, batch, min_seconds, stem, s2d)
    if json_out is not None:
        json_out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
