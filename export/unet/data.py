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


@dataclass(frozen=True)
class Brightness:
    """Brightness jitter of the reflectance channels, done on NORMALISED tiles exactly as a raw gain.

    Raw ``r' = b r`` is ``x' = b x + (b - 1) mean / std`` after normalisation; ratio channels (GRVI,
    NDVI) are invariant to a common gain and are left alone. ``b`` ~ U(1 - amount, 1 + amount).
    """

    channels: tuple[int, ...]
    shift: tuple[float, ...]  # mean / std of those channels
    amount: float = 0.2

    @classmethod
    def for_stack(
        cls, names: list[str], reflectance: frozenset[str], mean: list[float], std: list[float]
    ) -> Brightness | None:
        idx = tuple(i for i, n in enumerate(names) if n in reflectance)
        return cls(idx, tuple(mean[i] / std[i] for i in idx)) if idx else None


def augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, brightness: Brightness | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations, the same for a tile and its mask (per sample), and
    (with ``brightness``) a random illumination gain of the reflectance channels."""
    xs, ys = [], []
    for i in range(x.shape[0]):
        k = int(torch.randint(0, 4, (1,), generator=gen))
        flip = bool(torch.randint(0, 2, (1,), generator=gen))
        xi = torch.rot90(x[i], k, dims=(1, 2))
        yi = torch.rot90(y[i], k, dims=(1, 2))
        if flip:
            xi = torch.flip(xi, dims=(2,))
            yi = torch.flip(yi, dims=(2,))
        if brightness is not None:
            b = 1.0 + brightness.amount * (2.0 * float(torch.rand(1, generator=gen)) - 1.0)
            xi = xi.clone()
            for c, sh in zip(brightness.channels, brightness.shift, strict=True):
                xi[c] = b * xi[c] + (b - 1.0) * sh
        xs.append(xi)
        ys.append(yi)
    return torch.stack(xs), torch.stack(ys)


def kfold_by_scene(records: list[TileRecord], k: int, seed: int) -> list[list[str]]:
    """``k`` folds of tile ids, each fold a set of whole scenes (images): no tile of a test image
    is ever in training. Scenes are shuffled with the seed and dealt round-robin."""
    scenes = sorted({r.scene for r in records})
    if k < 2 or k > len(scenes):
        raise TrainingError(
            f"--folds {k} with {len(scenes)} scenes (images)", fix=f"use 2 <= --folds <= {len(scenes)}"
        )
    rng = np.random.default_rng(seed)
    order = [scenes[i] for i in rng.permutation(len(scenes))]
    fold_of = {s: i % k for i, s in enumerate(order)}
    return [[r.id for r in records if fold_of[r.scene] == f] for f in range(k)]


def inner_split(
    records: list[TileRecord], ids: list[str], seed: int, fraction: float = 0.2
) -> tuple[list[str], list[str]]:
    """Training ids -> (fit ids, validation ids), validation = whole scenes (>= 1), for early stopping
    and thresholds, so nothing of the outer test fold is used to choose them."""
    by_id = {r.id: r for r in records}
    scenes = sorted({by_id[i].scene for i in ids})
    if len(scenes) < 2:
        raise TrainingError(
            f"only {len(scenes)} training scene(s): no validation image left", fix="provide more images"
        )
    rng = np.random.default_rng(seed + 7919)
    n_val = max(1, round(fraction * len(scenes)))
    val_scenes = {scenes[i] for i in rng.permutation(len(scenes))[:n_val]}
    fit = [i for i in ids if by_id[i].scene not in val_scenes]
    val = [i for i in ids if by_id[i].scene in val_scenes]
    return fit, val
