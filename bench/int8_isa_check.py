"""INT8 portability check on this CPU (docs/int8.md, "Portable across instruction sets").

    .venv/bin/python bench/int8_isa_check.py bundles/demo [BUNDLE...]

For every INT8 variant: its golden inputs with graph optimisation on (fused int8 kernels: onnxruntime's
u8s8 path, which saturates on x86 without VNNI) and off (DequantizeLinear -> float op -> QuantizeLinear:
exact integer products). Prints max |fused - unfused| / std(FP32), then worst error / tolerance of the
manifest's golden check under each optimisation level (<= 1 passes). Not a test: a measurement.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

LEVELS = {
    "fused": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "unfused": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def run(path: Path, feeds: dict[str, np.ndarray], level: ort.GraphOptimizationLevel) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def main(bundles: list[str]) -> None:
    for bundle in map(Path, bundles):
        manifest = json.loads((bundle / "manifest.json").read_text())
        for m in manifest["models"]:
            g = np.load(bundle / m["golden"]["file"])
            feeds = {k.split("__", 1)[1]: g[k] for k in g.files if k.startswith("input__")}
            ref = {k.split("__", 2)[2]: g[k] for k in g.files if k.startswith("output__fp32__")}
            for v in m["variants"]:
                if v["precision"] != "int8":
                    continue
                outs = {name: run(bundle / v["file"], feeds, lvl) for name, lvl in LEVELS.items()}
                sat = {k: float(np.abs(outs["fused"][k] - outs["unfused"][k]).max() / (np.std(r) or 1.0))
                       for k, r in ref.items()}  # fmt: skip
                line = f"{bundle.name} {m['name']} {v['id']}: max|fused-unfused|/std {sat}"
                if v.get("golden_reference") == "fp32":
                    tol = v["golden_tolerance"]
                    for name, got in outs.items():
                        worst = max(
                            float((np.abs(got[k] - r) / (tol[k]["atol"] + tol[k]["rtol"] * np.abs(r))).max())
                            for k, r in ref.items()
                        )
                        line += f"; golden {name} {worst:.3f}"
                print(line)


if __name__ == "__main__":
    main(sys.argv[1:] or ["bundles/demo"])
