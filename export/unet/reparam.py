"""Re-parameterise for inference: each hybrid conv + its BatchNorm -> ONE 5x5 conv with bias.

``BN(0.5 * conv3x3(x) + 0.5 * conv3x3_dil2(x))`` is linear in x (BN in eval mode is an affine map
per channel), so it equals a single convolution:

* the 3x3 kernel goes to the centre of a 5x5 grid (taps at offsets -1..1 -> 5x5 indices 1..3),
* the dilated 3x3 kernel's taps sit at offsets -2, 0, 2 -> 5x5 indices 0, 2, 4,
* the sum is scaled by the 0.5/0.5 weights, then BN is folded: ``W' = W * g / s``,
  ``b' = beta - g * mean / s`` with ``s = sqrt(var + eps)``.

Plain conv3x3 + BN blocks are folded the same way into one 3x3 conv with bias. The result has only
Conv/ReLU/MaxPool/ConvTranspose/attention ops, which TensorRT INT8 fuses (conv + bias + ReLU).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from export.unet.model import ConvBN, HybridConvBN


def _bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm without running statistics cannot be folded")
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


@torch.no_grad()
def fuse_hybrid(block: HybridConvBN) -> nn.Conv2d:
    ws = block.conv_s.weight
    wd = block.conv_d.weight
    cout, cin = ws.shape[:2]
    k5 = torch.zeros(cout, cin, 5, 5, dtype=ws.dtype)
    k5[:, :, 1:4, 1:4] += block.w_standard * ws
    k5[:, :, 0::2, 0::2] += block.w_dilated * wd
    scale, shift = _bn_scale_shift(block.bn)
    conv = nn.Conv2d(cin, cout, 5, padding=2, bias=True)
    conv.weight.copy_(k5 * scale.view(-1, 1, 1, 1))
    if conv.bias is None:  # for mypy; bias=True above
        raise ValueError("fused conv lost its bias")
    conv.bias.copy_(shift)
    return conv


@torch.no_grad()
def fuse_conv_bn(block: ConvBN) -> nn.Conv2d:
    w = block.conv.weight
    cout, cin = w.shape[:2]
    scale, shift = _bn_scale_shift(block.bn)
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
    conv.weight.copy_(w * scale.view(-1, 1, 1, 1))
    if conv.bias is None:
        raise ValueError("fused conv lost its bias")
    conv.bias.copy_(shift)
    return conv


def reparameterise(model: nn.Module) -> nn.Module:
    """An eval-mode deep copy with every HybridConvBN / ConvBN replaced by its fused convolution."""
    fused = copy.deepcopy(model).eval()
    targets = [(name, mod) for name, mod in fused.named_modules() if isinstance(mod, HybridConvBN | ConvBN)]
    for name, mod in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = fused.get_submodule(parent_name) if parent_name else fused
        new = fuse_hybrid(mod) if isinstance(mod, HybridConvBN) else fuse_conv_bn(mod)
        setattr(parent, attr, new)
    return fused
