"""The multi-task CNN: shapes, losses, target folding, determinism, ONNX exportability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from export.displacement.dataset import Part
from export.displacement.model import ArchConfig, build, multitask_loss
from export.displacement.train import fit_cnn, predict_cnn, train_cnn

torch.set_num_threads(1)
CFG = ArchConfig(n_features=5, window=8, n_thresholds=3, channels=8, hidden=8)


def _part(n: int = 64, seed: int = 0, events: int = 1) -> Part:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5, 8)).astype(np.float32)
    y = 2.0 * x[:, 0, -1] + 0.5 + 0.05 * rng.normal(size=n)  # learnable: last step of feature 0
    # One horizon: y (N, 1); ``events`` auxiliary label columns, all 0 (no warning events).
    return Part(
        x, y[:, None], np.zeros(n, int), np.arange(n, dtype=float), np.zeros(n), np.zeros((n, events))
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


def test_training_learns_and_is_deterministic() -> None:
    part = _part()
    meta = {"feature_names": ["a"] * 5, "window": 8, "thresholds_mm": [0.0, 1.0, 2.0]}
    m1, scale = train_cnn(part, meta, seed=3, epochs=60, aux=True)
    m2, _ = train_cnn(part, meta, seed=3, epochs=60, aux=True)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    pred, prob = predict_cnn(m1, part.x)
    base = np.mean(np.abs(part.y - part.y.mean()))
    assert np.mean(np.abs(pred - part.y)) < 0.5 * base  # outputs are mm (target scaling folded)
    assert min(scale[1]) > 1.0  # per-horizon target scale (one horizon here)
    assert prob.shape == (64, 1)  # one warning-event probability per horizon


def test_frozen_extractor_stays_frozen() -> None:
    m = build(CFG)
    before = [p.detach().clone() for p in m.extractor_parameters()]
    for p in m.extractor_parameters():
        p.requires_grad_(False)
    fit_cnn(
        m,
        _part(events=CFG.n_thresholds),
        [0.0, 1.0, 2.0],
        seed=0,
        epochs=3,
        aux=True,
        params=m.head_parameters(),
    )
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
