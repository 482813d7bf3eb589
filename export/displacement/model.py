"""The multi-task displacement CNN (seed 000) and its single-task sibling.

Input ``window``: (batch, features, window) float32, normalised (agent.features.displacement).
Feature extractor: Conv1d(k=3) -> ReLU -> Conv1d(k=3) -> ReLU, then [global average over time ||
last time step], Linear -> ReLU. Heads: a clean final ``Linear(hidden, 1)`` for the next-step
displacement in mm (the target scaling is folded into its weights after training, so the ONNX output
is already mm and its last Gemm can stay FP32), and ``Linear(hidden, K)`` + sigmoid for the
probabilities of exceeding each of K thresholds. Plain Conv1d/ReLU/Linear/mean: ONNX-exportable,
no data-dependent control flow.

Loss (documented weights): ``L = w_reg * SmoothL1(y_hat_z, y_z) + w_aux * mean_k BCE(logit_k, y > T_k)``
with ``w_reg = 1``, ``w_aux = 0.5`` for the multi-task model and ``w_aux = 0`` for the single-task one.
"""

from __future__ import annotations

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
    n_thresholds: int
    channels: int = 32
    hidden: int = 32

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
        self.reg_head = nn.Linear(cfg.hidden, 1)
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
        """(displacement_mm (B, 1), exceed_prob (B, K))."""
        reg, logits = self.forward_logits(x)
        return reg, torch.sigmoid(logits)

    @torch.no_grad()
    def fold_target_scaling(self, mean: float, std: float) -> None:
        """Make the regression head output mm: y = std * y_z + mean, folded into its Linear."""
        self.reg_head.weight.mul_(std)
        self.reg_head.bias.mul_(std).add_(mean)

    @torch.no_grad()
    def unfold_target_scaling(self, mean: float, std: float) -> None:
        self.reg_head.bias.sub_(mean).div_(std)
        self.reg_head.weight.div_(std)


def multitask_loss(
    reg_z: torch.Tensor,
    logits: torch.Tensor,
    y_z: torch.Tensor,
    exceed: torch.Tensor,
    w_reg: float = W_REG,
    w_aux: float = W_AUX,
) -> torch.Tensor:
    """Regression on the standardised target plus the auxiliary exceedance BCE (see module docstring)."""
    loss = w_reg * F.smooth_l1_loss(reg_z.squeeze(1), y_z)
    if w_aux > 0:
        loss = loss + w_aux * F.binary_cross_entropy_with_logits(logits, exceed)
    return loss


def build(cfg: ArchConfig) -> DisplacementCNN:
    return DisplacementCNN(cfg)
