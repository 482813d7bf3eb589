"""Enhanced U-Net of seed 004 and its ablation variants (plain, hybrid-only), in torch.

* ``plain``: every conv is conv3x3 + BatchNorm + ReLU (the classic U-Net).
* ``hybrid``: every conv is the hybrid convolution ``BN(0.5 * conv3x3(x) + 0.5 * dilated_conv3x3_r2(x))``
  + ReLU (seed 004 eq. 9 with the 0.5/0.5 weights of its Table 4).
* ``enhanced``: hybrid + Multi-Channel Spatial Attention (MCSA) on the output of every encoder stage and
  of the bottleneck.

MCSA (eqs. 10-15): channel attention ``A_c = sigmoid(MLP(avgpool X) + MLP(maxpool X))`` with a shared
two-layer MLP (reduce by ``reduction``, ReLU, restore), spatial attention
``A_s = sigmoid(conv3x3(ReLU(conv3x3([mean_c X, max_c X]))))``. Eq. 15 as printed (``X + A``) would add
an attention map to the features instead of weighting them; we read it as the element-wise weighting
of eqs. 11 and 13 with the combined map of eq. 14: ``X_out = X * (A_c + A_s)`` (broadcast over
channels / pixels). Everything is static-shape tensor algebra: no data-dependent control flow, so the
module exports to ONNX.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Variant = Literal["plain", "hybrid", "enhanced"]
VARIANTS: tuple[Variant, ...] = ("plain", "hybrid", "enhanced")


class ConvBN(nn.Module):
    """conv3x3 (no bias) + BatchNorm: the plain U-Net's convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class HybridConvBN(nn.Module):
    """Hybrid convolution: BN(w_s * conv3x3(x) + w_d * conv3x3_dilation2(x)), w_s = w_d = 0.5."""

    def __init__(self, cin: int, cout: int, w_standard: float = 0.5, w_dilated: float = 0.5) -> None:
        super().__init__()
        self.conv_s = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv_d = nn.Conv2d(cin, cout, 3, padding=2, dilation=2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.w_standard = w_standard
        self.w_dilated = w_dilated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.w_standard * self.conv_s(x) + self.w_dilated * self.conv_d(x))


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(channels // reduction, 2)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv2(torch.relu(self.conv1(pooled))))


class MCSA(nn.Module):
    """Multi-Channel Spatial Attention: X * (A_c + A_s)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.channel(x) + self.spatial(x))


class SpaceToDepth(nn.Module):
    """``nn.PixelUnshuffle(factor)`` as a convolution with fixed one-hot weights (kernel = stride =
    factor): the same numbers in the same channel order, but it exports as a Conv that INT8 runs as a
    quantized convolution instead of a float 6-D Transpose (21 % of the INT8 graph's time)."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        # output channel (c * factor + i) * factor + j takes input channel c at offset (i, j): the
        # row-major flattening of (channel, i, j), so the weights are an identity matrix reshaped
        n = channels * factor * factor
        weight = torch.eye(n).reshape(n, channels, factor, factor)
        self.weight: torch.Tensor
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight, stride=self.factor)


def _conv(cin: int, cout: int, variant: Variant) -> nn.Module:
    return ConvBN(cin, cout) if variant == "plain" else HybridConvBN(cin, cout)


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, variant: Variant, attention: bool) -> None:
        super().__init__()
        self.c1 = _conv(cin, cout, variant)
        self.c2 = _conv(cout, cout, variant)
        self.attn: nn.Module = MCSA(cout) if attention else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.attn(x)


class UNet(nn.Module):
    """U-Net with ``depth`` down-sampling steps; input H and W must be multiples of 2**depth.

    Stage widths ``base * 2**i``; ``stem`` (0: ``base``) overrides the first stage's width
    (INT8 convolution kernels run 8-channel layers ~5x slower per MAC than 16-channel ones).
    ``s2d`` > 1 folds each ``s2d x s2d`` block of pixels into channels first (:class:`SpaceToDepth`) and
    unfolds ``s2d**2`` logits per low-resolution pixel at the end (PixelShuffle): the same MACs run
    in fewer, wider convolutions. H and W must then be multiples of ``s2d * 2**depth``.

    Returns logits (N, 1, H, W); :class:`ProbabilityHead` wraps it with a sigmoid for export.
    """

    def __init__(
        self,
        in_channels: int = 7,
        base: int = 16,
        depth: int = 4,
        variant: Variant = "enhanced",
        stem: int = 0,
        s2d: int = 1,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown U-Net variant {variant!r}; expected one of {VARIANTS}")
        if s2d < 1:
            raise ValueError(f"s2d (space-to-depth factor) must be >= 1, got {s2d}")
        self.variant = variant
        self.depth = depth
        self.fold: nn.Module = SpaceToDepth(in_channels, s2d) if s2d > 1 else nn.Identity()
        self.unfold: nn.Module = nn.PixelShuffle(s2d) if s2d > 1 else nn.Identity()
        in_channels *= s2d * s2d
        attention = variant == "enhanced"
        widths = [base * 2**i for i in range(depth + 1)]
        widths[0] = stem or base
        self.down = nn.ModuleList()
        cin = in_channels
        for wdt in widths[:-1]:
            self.down.append(DoubleConv(cin, wdt, variant, attention))
            cin = wdt
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], variant, attention)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.up.append(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2))
            self.dec.append(DoubleConv(2 * widths[i], widths[i], variant, False))
        self.head = nn.Conv2d(widths[0], s2d * s2d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fold(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        out: torch.Tensor = self.unfold(self.head(x))
        return out


class ProbabilityHead(nn.Module):
    """Wraps a logit network so the exported graph outputs per-pixel probabilities in [0, 1]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, height: int = 128, width: int = 128, in_channels: int = 7) -> int:
    """Multiply-accumulates x 2 of the conv / transposed-conv layers for one (1, C, H, W) input."""
    total = 0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total += 2 * k * out.numel()
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.out_channels
            total += 2 * k * _inp[0].numel()

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros(1, in_channels, height, width))
    module.train(was_training)
    for h in handles:
        h.remove()
    return total
