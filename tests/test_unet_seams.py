"""Predicting a raster larger than a tile: overlapping tiles stitched without seams.

Design: a U-Net is fully convolutional except for the attention's global pooling, so the reference
for "no seams" is the same network run once over the whole raster (full-raster convolution). Where
the tiling margin covers the network's receptive field the stitched map must EQUAL that reference;
with attention it must agree closely; naive non-overlapping tiling is the control that shows seams.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent.features.raster_channels import normalise
from agent.features.tiling import make_grid
from export.raster.synthetic import make_scene
from export.unet.model import ProbabilityHead, UNet
from export.unet.predict import predict_raster
from export.unet.reparam import reparameterise

torch.set_num_threads(1)


def _setup(variant: str) -> tuple[torch.nn.Module, np.ndarray, list[float], list[float], np.ndarray]:
    stack = make_scene(np.random.default_rng(0), 320).stack[:, :300, :260]  # SYNTHETIC, 3x3 tiles
    mean = stack.reshape(7, -1).mean(1).tolist()
    std = stack.reshape(7, -1).std(1).tolist()
    torch.manual_seed(0)
    net = UNet(7, 4, 2, variant)  # type: ignore[arg-type]
    net.head.weight.data *= 40  # spread the random net's output over (0, 1)
    module = ProbabilityHead(reparameterise(net.eval())).eval()
    x, _ = normalise(stack, mean, std)
    with torch.no_grad():
        full = module(torch.from_numpy(x[None]))[0, 0].numpy()
    return module, stack, mean, std, full


def _edge_jump_ratio(p: np.ndarray, overlap: int, margin: int) -> float:
    """Mean |step| across the columns where tiles meet / mean |step| over all columns."""
    grid = make_grid(*p.shape, tile=128, overlap=overlap, margin=margin)
    edges = sorted({c - margin for _, c in grid.origins if 0 < c - margin < p.shape[1]})
    steps = np.abs(np.diff(p, axis=1))
    return float(steps[:, [e - 1 for e in edges]].mean() / steps.mean())


def test_stitched_equals_full_raster_conv_where_the_margin_covers_the_receptive_field() -> None:
    module, stack, mean, std, full = _setup("hybrid")
    prob, counts = predict_raster(module, stack, mean, std, tile=128, overlap=64, margin=32)
    assert counts["tiles"] > 4 and prob.shape == (300, 260)
    valid = (slice(32, -32), slice(32, -32))  # the full-raster run zero-pads at the raster edge
    np.testing.assert_allclose(prob[valid], full[valid], atol=1e-5)
    naive, _ = predict_raster(module, stack, mean, std, tile=128, overlap=0, margin=0)
    assert np.abs(naive - full)[valid].max() > 100 * np.abs(prob - full)[valid].max() + 1e-3
    assert _edge_jump_ratio(naive, 0, 0) > 2.0  # the control shows its seams


def test_enhanced_default_tiling_agrees_with_full_raster() -> None:
    module, stack, mean, std, full = _setup("enhanced")
    prob, _ = predict_raster(module, stack, mean, std)  # defaults: overlap 32, margin 16
    naive, _ = predict_raster(module, stack, mean, std, overlap=0, margin=0)
    valid = (slice(16, -16), slice(16, -16))
    err = np.abs(prob - full)[valid]
    assert err.mean() < 0.02 * full.std()
    assert err.max() < 0.1 * np.abs(naive - full)[valid].max()
    assert _edge_jump_ratio(prob, 32, 16) < 1.5


@pytest.mark.faults
def test_nodata_and_nonfinite_inputs_are_masked_and_counted() -> None:
    module, stack, mean, std, _ = _setup("hybrid")
    bad = stack.copy()
    bad[:6, 100:140, 50:90] = np.nan  # a nodata hole (all static channels missing)
    bad[5, 10, 10] = np.inf  # one corrupt DEM value
    prob, counts = predict_raster(module, bad, mean, std)
    assert counts["nodata_pixels"] == 40 * 40
    assert np.isnan(prob[100:140, 50:90]).all()
    assert np.isfinite(np.delete(prob.ravel(), np.flatnonzero(np.isnan(prob)))).all()
    assert np.isfinite(prob[10, 10]) and counts["nonfinite_inputs_replaced"] >= 40 * 40 * 6 + 1
