"""Enhanced U-Net: shapes, attention, re-parameterisation (two 3x3 and 5x5, 1e-4), ONNX export, losses,
metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export.unet.losses import dice_bce_loss
from export.unet.metrics import best_threshold, binary_metrics
from export.unet.model import (
    MCSA,
    VARIANTS,
    ConvBN,
    HybridConvBN,
    ProbabilityHead,
    SpaceToDepth,
    UNet,
    count_flops,
    count_params,
)
from export.unet.reparam import BranchPair, fuse_hybrid, fuse_hybrid_5x5, reparameterise

torch.set_num_threads(1)


def _randomise_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)  # type: ignore[union-attr]
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.2)  # type: ignore[union-attr]
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def test_hybrid_block_is_two_3x3_convs_without_zero_taps() -> None:
    torch.manual_seed(0)
    block = HybridConvBN(3, 5)
    _randomise_bn(block, 1)
    block.eval()
    pair = fuse_hybrid(block)
    assert pair.standard.kernel_size == pair.dilated.kernel_size == (3, 3)
    assert pair.dilated.dilation == (2, 2) and pair.dilated.bias is None and pair.standard.bias is not None
    x = torch.randn(2, 3, 17, 23)
    with torch.no_grad():
        assert torch.allclose(block(x), pair(x), atol=1e-5)
        assert torch.allclose(pair(x), fuse_hybrid_5x5(block)(x), atol=1e-5)
    # no structurally zero taps: 18 MACs per output and input channel against the 5x5's 25
    assert pair.standard.weight.numel() + pair.dilated.weight.numel() == 18 * 3 * 5


def test_hybrid_block_is_one_5x5_conv() -> None:
    torch.manual_seed(0)
    block = HybridConvBN(3, 5)
    _randomise_bn(block, 1)
    block.eval()
    conv = fuse_hybrid_5x5(block)
    assert conv.kernel_size == (5, 5) and conv.padding == (2, 2) and conv.bias is not None
    x = torch.randn(2, 3, 17, 23)
    assert torch.allclose(block(x), conv(x), atol=1e-5)
    # the dilated taps land on the even 5x5 positions, the standard ones on the centre 3x3
    only_d = HybridConvBN(1, 1)
    only_d.conv_s.weight.data.zero_()
    only_d.conv_d.weight.data.fill_(1.0)
    only_d.eval()
    k = fuse_hybrid_5x5(only_d).weight[0, 0] * math.sqrt(1 + 1e-5)
    expect = torch.zeros(5, 5)
    expect[0::2, 0::2] = 0.5
    assert torch.allclose(k, expect, atol=1e-6)


@pytest.mark.parametrize("hybrid", ["two3x3", "5x5"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_reparameterised_network_matches_to_1e4(variant: str, hybrid: str) -> None:
    torch.manual_seed(3)
    net = UNet(7, base=4, depth=2, variant=variant)  # type: ignore[arg-type]
    # a few real training steps so the weights are not just the init
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.randn(4, 7, 32, 32)
    y = (torch.rand(4, 1, 32, 32) > 0.8).float()
    for _ in range(3):
        loss = dice_bce_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _randomise_bn(net, 4)
    net.eval()
    fused = reparameterise(net, hybrid)
    assert not any(isinstance(m, HybridConvBN | ConvBN | nn.BatchNorm2d) for m in fused.modules())
    fives = any(isinstance(m, nn.Conv2d) and m.kernel_size == (5, 5) for m in fused.modules())
    assert fives == (variant != "plain" and hybrid == "5x5")
    assert any(isinstance(m, BranchPair) for m in fused.modules()) == (
        variant != "plain" and hybrid == "two3x3"
    )
    xt = torch.randn(2, 7, 64, 64)
    with torch.no_grad():
        diff = (net(xt) - fused(xt)).abs().max().item()
    assert diff < 1e-4
    assert net.training is False and count_params(fused) > 0


def _output_and_reparam_gap(net: UNet, bn_seed: int) -> tuple[torch.Tensor, float]:
    """The eval network's output on a 32 px batch and its max gap to the two-3x3 re-parameterisation."""
    _randomise_bn(net, bn_seed)
    net.eval()
    x = torch.randn(2, 7, 32, 32)
    with torch.no_grad():
        out = net(x)
        return out, (out - reparameterise(net, "two3x3")(x)).abs().max().item()


def test_stem_widens_only_the_full_resolution_stage() -> None:
    torch.manual_seed(5)
    plain, wide = UNet(7, base=4, depth=2), UNet(7, base=4, depth=2, stem=8)

    def convs(net: nn.Module) -> list[tuple[int, int]]:
        return [(m.in_channels, m.out_channels) for m in net.modules() if isinstance(m, nn.Conv2d)]

    # widths [8, 8, 16] against [4, 8, 16]: the deeper stages keep base * 2**i, fed by the wider stem
    assert convs(wide.down[0])[:2] == [(7, 8), (7, 8)] and convs(plain.down[0])[:2] == [(7, 4), (7, 4)]
    assert convs(wide.down[1])[:2] == [(8, 8), (8, 8)] and convs(plain.down[1])[:2] == [(4, 8), (4, 8)]
    assert convs(wide.head) == [(8, 1)] and convs(plain.head) == [(4, 1)]
    assert count_params(wide.bottleneck) == count_params(plain.bottleneck)
    out, diff = _output_and_reparam_gap(wide, 6)
    assert out.shape == (2, 1, 32, 32) and diff < 1e-4


def test_space_to_depth_folds_pixels_into_channels_and_unfolds_one_logit_per_pixel() -> None:
    torch.manual_seed(7)
    net = UNet(7, base=16, depth=2, s2d=2)
    first = net.down[0].c1.conv_s  # type: ignore[union-attr]
    # 2 x 2 blocks of 7 channels -> 28 channels at half resolution; the head gives 4 logits per
    # low-resolution pixel, unfolded back to one per input pixel
    assert isinstance(first, nn.Conv2d) and (first.in_channels, first.out_channels) == (28, 16)
    assert net.head.out_channels == 4
    out, diff = _output_and_reparam_gap(net, 8)
    assert out.shape == (2, 1, 32, 32) and diff < 1e-4
    with pytest.raises(ValueError, match="s2d"):
        UNet(7, base=4, depth=1, s2d=0)


@pytest.mark.parametrize("factor", [2, 4])
def test_the_space_to_depth_convolution_is_pixel_unshuffle_exactly(factor: int) -> None:
    x = torch.randn(3, 7, 32, 32)
    assert torch.equal(SpaceToDepth(7, factor)(x), nn.PixelUnshuffle(factor)(x))


def test_mcsa_weights_features_in_0_2() -> None:
    torch.manual_seed(0)
    att = MCSA(8)
    x = torch.rand(2, 8, 16, 16) + 0.1
    out = att(x)
    ratio = out / x
    assert out.shape == x.shape and ratio.min() > 0 and ratio.max() < 2


def test_enhanced_adds_attention_only() -> None:
    plain, hybrid, enh = (UNet(variant=v) for v in VARIANTS)
    assert count_params(hybrid) > count_params(plain) and count_params(enh) > count_params(hybrid)
    assert not any(isinstance(m, MCSA) for m in hybrid.modules())
    assert sum(isinstance(m, MCSA) for m in enh.modules()) == 5  # 4 encoder stages + bottleneck
    flops = count_flops(enh)
    assert 2e9 < flops < 4e9  # docs/riskmap.md: ~3.0 GFLOPs per 128x128 tile for the default width


@pytest.mark.parametrize(("base", "depth", "s2d"), [(4, 2, 1), (8, 1, 4)])
def test_onnx_export_of_the_shipped_module_matches_torch(
    tmp_path: Path, base: int, depth: int, s2d: int
) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    net = UNet(7, base=base, depth=depth, variant="enhanced", s2d=s2d)
    _randomise_bn(net, 2)
    module = ProbabilityHead(reparameterise(net.eval())).eval()
    x = torch.randn(2, 7, 128, 128)
    path = tmp_path / "unet.onnx"
    torch.onnx.export(
        module,
        (x,),
        path,
        input_names=["tiles"],
        output_names=["probability"],
        dynamic_axes={"tiles": {0: "n"}, "probability": {0: "n"}},
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"tiles": x.numpy()})[0]
    with torch.no_grad():
        expect = module(x).numpy()
    assert got.shape == (2, 1, 128, 128)
    np.testing.assert_allclose(got, expect, atol=1e-5)
    # issue 18: no structurally zero taps in the exported graph (no kernel position that is zero for
    # every output and input channel, as 8 of the 25 taps of the 5x5 form are)
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inits.update(
        {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}
    )
    kernels = [inits[n.input[1]] for n in graph.node if n.op_type == "Conv" and n.input[1] in inits]
    assert len(kernels) == sum(n.op_type == "Conv" for n in graph.node)
    # the space-to-depth fold is the one s2d x s2d kernel (one-hot: every tap used); no float
    # Transpose, which is what PixelUnshuffle exports to (slow in the INT8 graph)
    assert kernels and sorted({k.shape[-1] for k in kernels}) == sorted({1, 3, s2d})
    assert all((np.abs(k).sum(axis=(0, 1)) > 0).all() for k in kernels)
    assert "Transpose" not in {n.op_type for n in graph.node}


def test_loss_and_metrics_by_hand() -> None:
    y = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    good = dice_bce_loss(torch.tensor([[[[20.0, -20.0], [-20.0, -20.0]]]]), y)
    bad = dice_bce_loss(torch.tensor([[[[-20.0, 20.0], [20.0, 20.0]]]]), y)
    assert float(good) < 0.01 and float(bad) > 1.5
    score = np.array([0.9, 0.8, 0.3, 0.1, 0.7])
    mask = np.array([1, 0, 1, 0, 0])
    m = binary_metrics(score, mask, 0.5)
    # pred = [1,1,0,0,1]: tp 1, fp 2, fn 1
    assert m["dice"] == pytest.approx(2 / 5) and m["iou"] == pytest.approx(1 / 4)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 2)
    assert m["auc"] == pytest.approx(4 / 6)  # pairs (pos, neg) ranked right: 0.9>all 3, 0.3>0.1
    assert (
        best_threshold(np.array([0.1, 0.2, 0.9, 0.95]), np.array([0, 0, 1, 1]), np.array([0.5, 0.15])) == 0.5
    )
