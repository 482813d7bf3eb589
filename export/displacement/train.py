"""Training of the displacement CNNs (multi-task and single-task) on the fit part.

Adam (lr 3e-3, weight decay 1e-4), batch 64, at most ``epochs`` epochs with early stopping: the
chronologically last 15 % of each station's fit windows are held out, training stops after 10 epochs
without improvement of their loss and the best weights are kept. The conformal calibration part and
the test part are never used for training or model selection.
The regression targets (one per horizon) are standardised with the fit part's mean/std during training,
and that scaling is folded into the final Linear afterwards so the trained module outputs mm; missing
targets of longer horizons are masked. The auxiliary labels are the site's warning events within each
horizon (``Part.event``). Deterministic for a seed.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from agent.features.forecast_dist import horizons_of
from export.displacement.dataset import Part
from export.displacement.model import W_AUX, ArchConfig, DisplacementCNN, build, multitask_loss

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 120
LR = 3e-3
WEIGHT_DECAY = 1e-4
BATCH = 64
PATIENCE = 10
VAL_FRACTION = 0.15

Progress = Callable[[int, float], None]  # (epoch done, mean loss)


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def arch_for(meta: Mapping[str, Any]) -> ArchConfig:
    n_h = len(horizons_of(meta))
    return ArchConfig(
        n_features=len(meta["feature_names"]), window=int(meta["window"]), n_thresholds=n_h, n_horizons=n_h
    )


def horizon_scale(y: np.ndarray) -> tuple[list[float], list[float]]:
    """NaN-aware per-horizon (mean, std) of the targets (N, H)."""
    y2 = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
    mean = [float(np.nanmean(c)) if np.isfinite(c).any() else 0.0 for c in y2.T]
    std = [max(float(np.nanstd(c)), 1e-6) if np.isfinite(c).sum() > 1 else 1.0 for c in y2.T]
    return mean, std


def _tensors(part: Part, mean: Any, std: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    y = part.y.astype(np.float64).reshape(len(part), -1)
    x_t = torch.from_numpy(part.x.astype(np.float32))
    y_z = torch.from_numpy(((y - np.asarray(mean)) / np.asarray(std)).astype(np.float32))
    exceed = torch.from_numpy(np.asarray(part.event, dtype=np.float32).reshape(len(part), -1))
    return x_t, y_z, exceed


def fit_cnn(
    model: DisplacementCNN,
    part: Part,
    thresholds: list[float],
    *,
    seed: int,
    epochs: int,
    aux: bool,
    lr: float = LR,
    params: list[torch.nn.Parameter] | None = None,
    target_scale: tuple[Any, Any] | None = None,
    progress: Progress | None = None,
    val: Part | None = None,
    patience: int = PATIENCE,
) -> tuple[Any, Any]:
    """Train ``model`` in place on ``part``; returns the (mean, std) used to standardise the target.

    With ``val`` (a chronologically later slice of the training data), training stops after
    ``patience`` epochs without improvement of the validation loss and the best weights are restored.
    The module's regression head must currently output the STANDARDISED target; call
    ``model.fold_target_scaling(*returned)`` afterwards to make it output mm.
    """
    g = seed_everything(seed)
    mean, std = target_scale or horizon_scale(part.y)
    x_t, y_z, exceed = _tensors(part, mean, std)
    opt = torch.optim.Adam(
        params if params is not None else list(model.parameters()), lr=lr, weight_decay=WEIGHT_DECAY
    )
    w_aux = W_AUX if aux else 0.0
    n = x_t.shape[0]
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    since_best = 0
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, BATCH):
            idx = order[i : i + BATCH]
            reg, logits = model.forward_logits(x_t[idx])
            loss = multitask_loss(reg, logits, y_z[idx], exceed[idx], w_aux=w_aux)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        if progress is not None:
            progress(epoch + 1, total / max(n, 1))
        if val is not None and len(val):
            v = _loss_on(model, val, thresholds, mean, std, w_aux)
            if best is None or v < best[0]:
                best, since_best = (v, copy.deepcopy(model.state_dict())), 0
            else:
                since_best += 1
                if since_best >= patience:
                    log.debug("early stop at epoch %d (best val loss %.4f)", epoch + 1, best[0])
                    break
    if best is not None:
        model.load_state_dict(best[1])
    model.eval()
    return mean, std


@torch.no_grad()
def _loss_on(
    model: DisplacementCNN, part: Part, thresholds: list[float], mean: Any, std: Any, w_aux: float
) -> float:
    model.eval()
    x_t, y_z, exceed = _tensors(part, mean, std)
    reg, logits = model.forward_logits(x_t)
    return float(multitask_loss(reg, logits, y_z, exceed, w_aux=w_aux))


def split_validation(part: Part, fraction: float = VAL_FRACTION) -> tuple[Part, Part]:
    """(train, val): the chronologically last ``fraction`` of each station's windows is validation."""
    is_val = np.zeros(len(part), dtype=bool)
    for s in np.unique(part.station):
        idx = np.nonzero(part.station == s)[0]
        order = idx[np.argsort(part.t[idx], kind="stable")]
        k = round(order.size * fraction)
        if k:
            is_val[order[-k:]] = True

    return part.take(~is_val), part.take(is_val)


def train_cnn(
    part: Part,
    meta: Mapping[str, Any],
    *,
    seed: int,
    epochs: int,
    aux: bool,
    progress: Progress | None = None,
    early_stopping: bool = True,
) -> tuple[DisplacementCNN, tuple[Any, Any]]:
    """A fresh CNN trained on ``part``, outputting mm, and the target (mean, std) folded into it.

    With ``early_stopping`` the last 15 % of each station's fit windows (chronologically) are held out
    as validation for early stopping (patience 10); the conformal calibration part is not touched.
    """
    seed_everything(seed)
    model = build(arch_for(meta))
    train, val = split_validation(part) if early_stopping else (part, None)
    if val is not None and len(val) < 4:
        train, val = part, None
    mean, std = fit_cnn(
        model,
        train,
        list(meta["thresholds_mm"]),
        seed=seed,
        epochs=epochs,
        aux=aux,
        progress=progress,
        val=val,
    )
    model.fold_target_scaling(mean, std)
    return model, (mean, std)


@torch.no_grad()
def predict_cnn(model: DisplacementCNN, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(displacement mm (N, H), auxiliary probabilities (N, K))."""
    model.eval()
    if x.shape[0] == 0:
        return np.zeros((0, model.cfg.n_horizons)), np.zeros((0, model.cfg.n_thresholds))
    reg, prob = model(torch.from_numpy(x.astype(np.float32)))
    return reg.double().numpy(), prob.double().numpy()
