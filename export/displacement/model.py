"""The multi-task displacement CNN (seed 000) and its single-task sibling.

Input ``window``: (batch, features, window) float32, normalised (agent.features.displacement).
Feature extractor: Conv1d(k=3) -> ReLU -> Conv1d(k=3) -> ReLU, then [global average over time ||
last time step], Linear -> ReLU. Heads: a clean final ``Linear(hidden, H)`` for the cumulative
displacement over each of the H horizons in mm (the target scaling is folded into its weights after
training, so the ONNX output is already mm and its last Gemm can stay FP32), and ``Linear(hidden, K)``
+ sigmoid for the probabilities of the K auxiliary labels: the site's warning event (K-step velocity
above V) within each horizon (K = H). Plain Conv1d/ReLU/Linear/mean: ONNX-exportable, no
data-dependent control flow.

Loss (documented weights): ``L = w_reg * SmoothL1(y_hat_z, y_z) + w_aux * mean_k BCE(logit_k, event_k)``
(missing targets masked) with ``w_reg = 1``, ``w_aux = 0.5`` for the multi-task model and ``w_aux = 0``
for the single-task one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

W_REG = 1.0
W_AUX = 0.5


@dataclass(frozen=True)
class ArchConfig:
    n_features: int
    window: int
    n_thresholds: int  # auxiliary (classification) outputs
    channels: int = 32
    hidden: int = 32
    n_horizons: int = 1  # regression outputs

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class DisplacementCNN(nn.Module):
    def __init__(self, cfg: ArchConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.conv1 = nn.Conv1d(cfg.n_features, c, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(c, c, kernel_size=3, padding=1)
        self.shared = nn.Linear(2 * c, cfg.hidden)
        self.reg_head = nn.Linear(cfg.hidden, cfg.n_horizons)
        self.cls_head = nn.Linear(cfg.hidden, cfg.n_thresholds)

    def extractor_parameters(self) -> list[nn.Parameter]:
        return [*self.conv1.parameters(), *self.conv2.parameters(), *self.shared.parameters()]

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.reg_head.parameters(), *self.cls_head.parameters()]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h))
        pooled = torch.cat([h.mean(dim=2), h[:, :, -1]], dim=1)
        return F.relu(self.shared(pooled))

    def forward_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.embed(x)
        return self.reg_head(z), self.cls_head(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(displacement_mm (B, H), exceed_prob (B, K))."""
        reg, logits = self.forward_logits(x)
        return reg, torch.sigmoid(logits)

    @torch.no_grad()
    def fold_target_scaling(self, mean: Scale, std: Scale) -> None:
        """Make the regression head output mm: y = std * y_z + mean (per horizon), folded into its Linear."""
        m, s = _vec(mean, self.cfg.n_horizons), _vec(std, self.cfg.n_horizons)
        self.reg_head.weight.mul_(s[:, None])
        self.reg_head.bias.mul_(s).add_(m)

    @torch.no_grad()
    def unfold_target_scaling(self, mean: Scale, std: Scale) -> None:
        m, s = _vec(mean, self.cfg.n_horizons), _vec(std, self.cfg.n_horizons)
        self.reg_head.bias.sub_(m).div_(s)
        self.reg_head.weight.div_(s[:, None])


Scale = float | Sequence[float]


def _vec(v: Scale, n: int) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=torch.float32).reshape(-1)
    return t.expand(n).clone() if t.numel() == 1 else t


def multitask_loss(
    reg_z: torch.Tensor,
    logits: torch.Tensor,
    y_z: torch.Tensor,
    exceed: torch.Tensor,
    w_reg: float = W_REG,
    w_aux: float = W_AUX,
) -> torch.Tensor:
    """Regression on the standardised targets plus the auxiliary BCE (see module docstring).

    ``y_z`` is (B,) or (B, H); NaN targets are masked out of the regression term.
    """
    y2 = y_z.reshape(reg_z.shape[0], -1)
    mask = torch.isfinite(y2)
    diff = F.smooth_l1_loss(reg_z, torch.where(mask, y2, reg_z.detach()), reduction="none")
    loss = w_reg * (diff * mask).sum() / mask.sum().clamp(min=1)
    if w_aux > 0:
        loss = loss + w_aux * F.binary_cross_entropy_with_logits(logits, exceed)
    return loss


def build(cfg: ArchConfig) -> DisplacementCNN:
    return DisplacementCNN(cfg)
