"""The multi-task CNN: shapes, losses, target folding, determinism, ONNX exportability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.displacement import references
from export.displacement.dataset import Part
from export.displacement.model import ArchConfig, build, multitask_loss
from export.displacement.train import fit_cnn, predict_cnn, train_cnn

torch.set_num_threads(1)
CFG = ArchConfig(n_features=5, window=8, n_thresholds=3, channels=8, hidden=8)


def _part(n: int = 64, seed: int = 0) -> Part:
    """Two horizons: y1 learnable from the last step of feature 0, y2 = 3 x that, some y2 missing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5, 8)).astype(np.float32)
    y1 = 2.0 * x[:, 0, -1] + 0.5 + 0.05 * rng.normal(size=n)
    y2 = 3.0 * y1
    y2[::7] = np.nan
    event = np.stack([y1 > 1.0, np.nan_to_num(y2) > 3.0], axis=1).astype(float)
    return Part(
        x, np.stack([y1, y2], axis=1), np.zeros(n, int), np.arange(n, dtype=float), np.zeros(n), event
    )


def test_shapes_and_output_ranges() -> None:
    m = build(CFG).eval()
    disp, prob = m(torch.zeros(4, 5, 8))
    assert disp.shape == (4, 1) and prob.shape == (4, 3)
    assert torch.all((prob >= 0) & (prob <= 1))
    assert isinstance(m.reg_head, torch.nn.Linear) and m.reg_head.out_features == 1


def test_multitask_loss_weights() -> None:
    reg = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([0.0, 1.0])
    logits = torch.tensor([[5.0, -5.0], [-5.0, 5.0]])
    wrong = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert float(multitask_loss(reg, logits, y, wrong, w_aux=0.0)) == pytest.approx(0.0)
    assert float(multitask_loss(reg, logits, y, wrong, w_aux=0.5)) > 2.0
    right = 1.0 - wrong
    assert float(multitask_loss(reg, logits, y, right, w_aux=0.5)) < 0.01


def test_fold_target_scaling_outputs_mm() -> None:
    m = build(CFG).eval()
    x = torch.randn(6, 5, 8)
    z = m(x)[0]
    m.fold_target_scaling(3.0, 2.5)
    assert torch.allclose(m(x)[0], z * 2.5 + 3.0, atol=1e-5)
    m.unfold_target_scaling(3.0, 2.5)
    assert torch.allclose(m(x)[0], z, atol=1e-5)


def test_masked_loss_ignores_missing_targets() -> None:
    reg = torch.tensor([[0.0, 5.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, float("nan")], [1.0, float("nan")]])
    logits = torch.zeros(2, 2)
    assert float(multitask_loss(reg, logits, y, torch.zeros(2, 2), w_aux=0.0)) == pytest.approx(0.0)


def test_training_learns_and_is_deterministic() -> None:
    part = _part()
    meta = {
        "feature_names": ["a"] * 5,
        "window": 8,
        "thresholds_mm": [0.0, 1.0, 2.0],
        "horizons_steps": [1, 2],
    }
    m1, scale = train_cnn(part, meta, seed=3, epochs=60, aux=True)
    m2, _ = train_cnn(part, meta, seed=3, epochs=60, aux=True)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    pred, prob = predict_cnn(m1, part.x)
    assert pred.shape == (64, 2) and prob.shape == (64, 2)
    for i in range(2):  # outputs are mm per horizon (target scaling folded), NaN targets skipped
        ok = np.isfinite(part.y[:, i])
        base = np.mean(np.abs(part.y[ok, i] - part.y[ok, i].mean()))
        assert np.mean(np.abs(pred[ok, i] - part.y[ok, i])) < 0.5 * base
    assert scale[1][0] > 1.0 and scale[1][1] > 3.0


def test_frozen_extractor_stays_frozen() -> None:
    m = build(ArchConfig(n_features=5, window=8, n_thresholds=2, channels=8, hidden=8, n_horizons=2))
    before = [p.detach().clone() for p in m.extractor_parameters()]
    for p in m.extractor_parameters():
        p.requires_grad_(False)
    fit_cnn(m, _part(), [0.0, 1.0, 2.0], seed=0, epochs=3, aux=True, params=m.head_parameters())
    for a, b in zip(before, m.extractor_parameters(), strict=True):
        assert torch.equal(a, b)


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    m = build(CFG).eval()
    x = torch.randn(3, 5, 8)
    path = tmp_path / "d.onnx"
    torch.onnx.export(
        m,
        (x,),
        str(path),
        input_names=["window"],
        output_names=["displacement_mm", "exceed_prob"],
        dynamic_axes={"window": {0: "batch"}},
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"window": x.numpy()})
    ref = m(x)
    np.testing.assert_allclose(out[0], ref[0].detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(out[1], ref[1].detach().numpy(), atol=1e-5)


def test_reference_graph_equals_numpy_reference(tmp_path: Path) -> None:
    """A bundle can carry the moving average / linear trend: the torch graph, its ONNX export and the
    numpy reference used in evaluation agree."""
    ort = pytest.importorskip("onnxruntime")
    meta = {
        "feature_names": ["velocity_mm", "rain_mm"],
        "window": 6,
        "norm_mean": [0.4, 1.0],
        "norm_std": [1.5, 2.0],
        "horizons_steps": [1, 3, 7],
    }
    x = np.random.default_rng(0).normal(size=(5, 2, 6)).astype(np.float32)
    for kind in references.CLOSED_FORM:
        mod = references.ReferenceModule(kind, meta).eval()
        ref = references.closed_form(kind, x, meta)
        np.testing.assert_allclose(mod(torch.from_numpy(x)).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
        path = tmp_path / f"{kind}.onnx"
        torch.onnx.export(
            mod,
            (torch.from_numpy(x),),
            str(path),
            input_names=["window"],
            output_names=["displacement_mm"],
            dynamic_axes={"window": {0: "batch"}},
            dynamo=False,
        )
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"window": x})[0], ref, rtol=1e-5, atol=1e-5)
    # a straight-line motion of 0.5 mm/step: every closed-form reference forecasts 0.5 h
    v = (np.full((1, 6), 0.5) - 0.4) / 1.5
    xs = np.stack([v, np.zeros((1, 6))], axis=1)
    for kind in references.CLOSED_FORM:
        np.testing.assert_allclose(references.closed_form(kind, xs, meta), [[0.5, 1.5, 3.5]], atol=1e-9)
