"""Re-parameterise for inference: each hybrid conv + its BatchNorm -> fused convolution(s) with bias.

``BN(0.5 * conv3x3(x) + 0.5 * conv3x3_dil2(x))`` is linear in x (BN in eval mode is an affine map
per channel ``g / s``, ``s = sqrt(var + eps)``), so it equals
``conv3x3(x; 0.5 W_s g / s, b) + conv3x3_dil2(x; 0.5 W_d g / s)`` with ``b = beta - g mean / s``:
18 multiply-accumulates per output and input channel, every one of them real work.

It also equals ONE 5x5 conv (the 3x3 at the centre, the dilated taps at indices 0, 2, 4:
:func:`fuse_hybrid_5x5`), but 8 of its 25 taps are structurally zero: 32 % of that graph's MACs
multiply zeros. Bundles export the two-3x3 form (:data:`EXPORT_HYBRID`; measured, docs/performance.md).

Plain conv3x3 + BN blocks are folded the same way into one 3x3 conv with bias. The result has only
Conv/Add/ReLU/MaxPool/ConvTranspose/attention ops, which TensorRT INT8 fuses (conv + bias + add + ReLU).
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


class BranchPair(nn.Module):
    """The inference form of a hybrid conv: a 3x3 conv (with the folded bias) + a dilated 3x3 conv."""

    def __init__(self, standard: nn.Conv2d, dilated: nn.Conv2d) -> None:
        super().__init__()
        self.standard, self.dilated = standard, dilated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standard(x) + self.dilated(x)


@torch.no_grad()
def fuse_hybrid(block: HybridConvBN) -> BranchPair:
    ws, wd = block.conv_s.weight, block.conv_d.weight
    cout, cin = ws.shape[:2]
    scale, shift = _bn_scale_shift(block.bn)
    standard = nn.Conv2d(cin, cout, 3, padding=1, bias=True)
    dilated = nn.Conv2d(cin, cout, 3, padding=2, dilation=2, bias=False)
    standard.weight.copy_(block.w_standard * ws * scale.view(-1, 1, 1, 1))
    dilated.weight.copy_(block.w_dilated * wd * scale.view(-1, 1, 1, 1))
    if standard.bias is None:  # for mypy; bias=True above
        raise ValueError("fused conv lost its bias")
    standard.bias.copy_(shift)
    return BranchPair(standard, dilated)


@torch.no_grad()
def fuse_hybrid_5x5(block: HybridConvBN) -> nn.Conv2d:
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


HYBRID_FORMS = ("two3x3", "5x5")
# What bundles export (export.unet.run.export_module): no structurally zero taps (docs/performance.md
# section 4 has the measured INT8 / FP32 tiles/s of both forms).
EXPORT_HYBRID = "two3x3"


def reparameterise(model: nn.Module, hybrid: str = EXPORT_HYBRID) -> nn.Module:
    """An eval-mode deep copy with every HybridConvBN / ConvBN replaced by its fused convolution(s);
    ``hybrid``: "two3x3" (a 3x3 + a dilated 3x3 conv + add: no zero taps; what bundles export) or
    "5x5" (one conv, 27 % more MACs, 32 % of them on structural zeros; kept for the benchmark)."""
    if hybrid not in HYBRID_FORMS:
        raise ValueError(f"hybrid re-parameterisation {hybrid!r}: use 'two3x3' or '5x5'")
    fuse = fuse_hybrid if hybrid == "two3x3" else fuse_hybrid_5x5
    fused = copy.deepcopy(model).eval()
    targets = [(name, mod) for name, mod in fused.named_modules() if isinstance(mod, HybridConvBN | ConvBN)]
    for name, mod in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = fused.get_submodule(parent_name) if parent_name else fused
        new: nn.Module = fuse(mod) if isinstance(mod, HybridConvBN) else fuse_conv_bn(mod)
        setattr(parent, attr, new)
    return fused
