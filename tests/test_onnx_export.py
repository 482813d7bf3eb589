"""FP32 ONNX export: dynamic batch, named tensors, pinned opset, checker, torch parity, clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.bundles import displacement_model, unet_model

from agent.errors import ExportError
from export.onnx_export import OPSET, export_onnx, ort_outputs, torch_outputs


def test_displacement_export_has_dynamic_batch_names_and_parity(tmp_path: Path) -> None:
    model = displacement_model(steps=20)
    report = export_onnx(model, tmp_path / "d.onnx")
    proto = onnx.load(str(report.path))
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == OPSET == 18
    assert [i.name for i in proto.graph.input] == ["window"]
    assert [o.name for o in proto.graph.output] == ["next_disp", "exceed_prob"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [6, 16]
    assert report.parity_count == 64 and max(report.parity_max_abs.values()) < 1e-4
    # the dynamic batch really works, for sizes never seen at export
    for n in (1, 5, 33):
        x = {"window": model.test_inputs["window"][:n]}
        got, want = ort_outputs(report.path, x), torch_outputs(model, x)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=1e-4)


def test_unet_export_runs_on_tiles(tmp_path: Path) -> None:
    model = unet_model(steps=5)
    report = export_onnx(model, tmp_path / "u.onnx")
    out = ort_outputs(report.path, {"tiles": model.test_inputs["tiles"][:3]})
    assert out["prob"].shape == (3, 1, 32, 32)
    assert ((out["prob"] >= 0) & (out["prob"] <= 1)).all()


class _DataDependent(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # Python control flow on data: torch.export cannot trace it
            return x * 2
        return x


@pytest.mark.faults
def test_untraceable_module_gives_an_export_error(tmp_path: Path) -> None:
    model = displacement_model(steps=1)
    model.module = _DataDependent()
    model.output_names = ["y"]
    with pytest.raises(ExportError, match=r"torch\.onnx\.export \(dynamo\) failed for model 'displacement'"):
        export_onnx(model, tmp_path / "x.onnx")


@pytest.mark.faults
def test_too_few_calibration_samples_and_wrong_output_count_are_clear(tmp_path: Path) -> None:
    model = displacement_model(steps=1)
    model.calibration_inputs = {"window": model.calibration_inputs["window"][:1]}
    with pytest.raises(ExportError, match="at least 2 calibration samples"):
        export_onnx(model, tmp_path / "x.onnx")
    model = displacement_model(steps=1)
    model.output_names = ["only_one"]
    with pytest.raises(ExportError, match="returns 2 tensors but names 1"):
        torch_outputs(model, {"window": model.test_inputs["window"][:2]})
