"""Training data for the U-Net: spatially blocked splits, normalisation fitted on train, augmentation.

Split (docs/riskmap.md): tiles are grouped so that neighbours stay together. With >= 3 scenes, a group
is a whole scene (tiles of one scene are spatial neighbours and share a storm); with fewer scenes, a
group is a 2x2 block of tiles and every train tile that touches (8-neighbourhood) a val/test tile of
the same scene is dropped as a buffer (counted). Groups are shuffled with the seed and assigned
6:2:2 (at least one group each for val and test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from agent.errors import TrainingError
from export.raster.tiles import TileRecord

log = logging.getLogger(__name__)


@dataclass
class Split:
    train: list[str]
    val: list[str]
    test: list[str]
    method: str
    buffer_dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "method": self.method,
            "buffer_dropped": self.buffer_dropped,
        }


def blocked_split(
    records: list[TileRecord], seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> Split:
    scenes = sorted({r.scene for r in records})
    by_scene = len(scenes) >= 3

    def group(r: TileRecord) -> tuple[str, int, int]:
        return (r.scene, 0, 0) if by_scene else (r.scene, r.row // 2, r.col // 2)

    groups = sorted({group(r) for r in records})
    if len(groups) < 3:
        raise TrainingError(
            f"only {len(groups)} spatial group(s) of tiles: cannot make a blocked train/val/test split",
            fix="provide at least 3 scenes (or a scene of at least 6x2 tiles)",
        )
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    n_test = max(1, round(fractions[2] * len(order)))
    n_val = max(1, round(fractions[1] * len(order)))
    test_g = set(order[:n_test])
    val_g = set(order[n_test : n_test + n_val])
    split = Split([], [], [], "by scene" if by_scene else "2x2 tile blocks with a 1-tile buffer")
    where: dict[tuple[str, int, int], str] = {}
    for r in records:
        g = group(r)
        name = "test" if g in test_g else "val" if g in val_g else "train"
        where[(r.scene, r.row, r.col)] = name
    for r in records:
        name = where[(r.scene, r.row, r.col)]
        if name == "train" and not by_scene:
            neighbours = [
                where.get((r.scene, r.row + dr, r.col + dc))
                for dr in (-1, 0, 1)
                for dc in (-1, 0, 1)
                if dr or dc
            ]
            if any(n in ("val", "test") for n in neighbours):
                split.buffer_dropped.append(r.id)
                continue
        getattr(split, name).append(r.id)
    if not split.train:
        raise TrainingError("the blocked split left no training tiles", fix="provide more scenes or tiles")
    log.info(
        "split %s: %d train, %d val, %d test tiles (%d dropped as buffer)",
        split.method,
        len(split.train),
        len(split.val),
        len(split.test),
        len(split.buffer_dropped),
    )
    return split


def fit_normalisation(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (N, C, H, W) training tiles (NaN ignored; std floored at 1e-6)."""
    if x.size == 0:
        raise TrainingError("no training tiles to fit the normalisation on", fix="provide training tiles")
    mean = np.nanmean(x, axis=(0, 2, 3))
    std = np.maximum(np.nanstd(x, axis=(0, 2, 3)), 1e-6)
    return [float(v) for v in mean], [float(v) for v in std]


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations, the same for a tile and its mask (per sample)."""
    xs, ys = [], []
    for i in range(x.shape[0]):
        k = int(torch.randint(0, 4, (1,), generator=gen))
        flip = bool(torch.randint(0, 2, (1,), generator=gen))
        xi = torch.rot90(x[i], k, dims=(1, 2))
        yi = torch.rot90(y[i], k, dims=(1, 2))
        if flip:
            xi = torch.flip(xi, dims=(2,))
            yi = torch.flip(yi, dims=(2,))
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)
