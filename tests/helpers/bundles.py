"""Tiny trained stand-ins for the two networks, shaped like the real ones, for bundle/ONNX/INT8 tests.

SYNTHETIC data: the targets are simple functions of the inputs so a few training steps give a model
whose INT8 accuracy can be measured. Not a substitute for the real runs (docs/int8.md has those).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.runs import ExportModel, LoadedRun

DISP_FEATURES = ["disp_e", "disp_n", "disp_u", "rain", "velocity", "rain_7d"]
UNET_CHANNELS = ["smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi"]


class TinyDisplacement(nn.Module):
    """Conv1d over (features, window) -> regression head (next-step mm) + sigmoid exceedance head."""

    def __init__(self, features: int = 6, window: int = 16, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(features, width, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(width)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.reg = nn.Linear(width * window, 1)
        self.exc = nn.Linear(width * window, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.relu(self.bn1(self.conv1(x)))
        z = torch.relu(self.conv2(z)).flatten(1)
        return self.reg(z), torch.sigmoid(self.exc(z))


class TinyUNet(nn.Module):
    """A two-level conv net on 7 x S x S tiles with a sigmoid probability map."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.enc = nn.Conv2d(7, width, 5, padding=2)
        self.down = nn.Conv2d(width, width, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.Conv2d(2 * width, width, 3, padding=1)
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.relu(self.enc(x))
        d = torch.relu(self.down(nn.functional.max_pool2d(e, 2)))
        u = torch.cat([self.up(d), e], dim=1)
        return torch.sigmoid(self.head(torch.relu(self.dec(u))))


def _disp_data(n: int, rng: np.random.Generator, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, len(DISP_FEATURES), window)).astype(np.float32)
    y = (0.8 * x[:, 0, -3:].mean(axis=1) + 0.5 * x[:, 3, -5:].mean(axis=1) + 0.3 * x[:, 4, -1]).astype(
        np.float32
    )
    exc = np.stack([(y > 0.3), (y > 0.8)], axis=1).astype(np.float32)
    return x, y[:, None], exc


def _unet_data(n: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, 7, size, size)).astype(np.float32)
    # smooth the slope channel so masks are blobs, then label steep + wet ground
    k = np.ones(5) / 5
    for c in (0, 4):
        x[:, c] = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 2, x[:, c]) * 2
    y = ((x[:, 4] + 0.5 * x[:, 0]) > 0.6).astype(np.float32)[:, None]
    return x, y


def _fit(model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    model.eval()


def displacement_model(seed: int = 0, window: int = 16, steps: int = 120) -> ExportModel:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x, y, e = _disp_data(320, rng, window)
    xt, yt, et = _disp_data(96, rng, window)
    model = TinyDisplacement(len(DISP_FEATURES), window)
    tx, ty, te = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(e)

    def loss() -> torch.Tensor:
        reg, prob = model(tx)
        return nn.functional.mse_loss(reg, ty) + nn.functional.binary_cross_entropy(prob, te)

    _fit(model, loss, steps)
    return ExportModel(
        name="displacement",
        task="displacement_forecast",
        module=model,
        input_names=["window"],
        output_names=["next_disp", "exceed_prob"],
        calibration_inputs={"window": x[:128]},
        calibration_description="SYNTHETIC windows 0..127 of the tiny test set (tests/helpers/bundles.py)",
        test_inputs={"window": xt},
        test_targets={"next_disp": yt, "exceed_prob": et},
        meta={
            "feature_names": DISP_FEATURES,
            "window": window,
            "horizon_steps": 1,
            "step": "1D",
            "normalisation": {"mean": [0.0] * len(DISP_FEATURES), "std": [1.0] * len(DISP_FEATURES)},
            "thresholds_mm": [0.3, 0.8],
            "synthetic": True,
        },
    )


def unet_model(seed: int = 0, size: int = 32, steps: int = 60) -> ExportModel:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    x, y = _unet_data(48, rng, size)
    xt, yt = _unet_data(16, rng, size)
    model = TinyUNet()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    _fit(model, lambda: nn.functional.binary_cross_entropy(model(tx), ty), steps)
    return ExportModel(
        name="unet",
        task="susceptibility_map",
        module=model,
        input_names=["tiles"],
        output_names=["prob"],
        calibration_inputs={"tiles": x[:32]},
        calibration_description="SYNTHETIC tiles 0..31 (tests/helpers/bundles.py)",
        test_inputs={"tiles": xt},
        test_targets={"prob": yt},
        meta={"feature_names": UNET_CHANNELS, "tile": size, "threshold": 0.5, "synthetic": True},
    )


def runs(tmp: Path, *, unet: bool = True) -> list[LoadedRun]:
    out = [LoadedRun("displacement", tmp / "disp-run", [displacement_model()])]
    if unet:
        out.append(LoadedRun("unet", tmp / "unet-run", [unet_model()]))
    return out
