"""`train unet`: the enhanced U-Net, its ablation variants and the reference maps, into one RUN_DIR."""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from agent.errors import TrainingError
from agent.features.channels import REFLECTANCE
from export.raster.tiles import open_tileset
from export.unet.data import Brightness, augment, blocked_split, fit_normalisation
from export.unet.evaluate import UNETS, model_names, model_scores
from export.unet.losses import dice_bce_loss
from export.unet.metrics import best_threshold, binary_metrics, json_safe
from export.unet.model import VARIANTS, UNet, Variant, count_flops, count_params
from export.unet.references import reference_names, save_random_forest, train_random_forest
from export.unet.run import RUN_VERSION, UnetRun, normalise_batch, write_run_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    seed: int = 0
    base: int = 16
    depth: int = 4
    stem: int = 0  # width of the first stage (0: base)
    s2d: int = 1  # space-to-depth factor of the input (1: none)
    batch_size: int = 8
    lr: float = 1e-3
    rf_pixels: int = 30000
    rf_trees: int = 60
    tile: int = 128
    folds: int = 0  # 0: one blocked train/val/test split; k >= 2: k-fold CV by scene (image) + final model
    ship: str = "enhanced"  # the variant exported as `unet`
    brightness: float = 0.2  # +-gain of reflectance channels (0: off; stacks without them: off)
    only_folds: tuple[int, ...] = ()  # CV: train just these folds (parallel processes), no final model


def _batches(n: int, size: int, gen: torch.Generator) -> list[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + size] for i in range(0, n, size)]


@torch.no_grad()
def _val_loss(net: UNet, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    net.eval()
    total = 0.0
    for i in range(0, x.shape[0], batch):
        total += float(dice_bce_loss(net(x[i : i + batch]), y[i : i + batch])) * len(x[i : i + batch])
    return total / max(1, x.shape[0])


def train_variant(
    variant: Variant,
    cfg: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    progress: Progress | None = None,
    brightness: Brightness | None = None,
) -> tuple[UNet, list[dict[str, float]]]:
    """Adam on Dice+BCE with flips/rot90 (+ brightness) augmentation; keeps the lowest-val-loss epoch."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = UNet(int(x_train.shape[1]), cfg.base, cfg.depth, variant, stem=cfg.stem, s2d=cfg.s2d)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    xt = torch.from_numpy(x_train)
    yt = torch.from_numpy(y_train[:, None].astype(np.float32))
    xv = torch.from_numpy(x_val)
    yv = torch.from_numpy(y_val[:, None].astype(np.float32))
    history: list[dict[str, float]] = []
    best_state, best_loss = copy.deepcopy(net.state_dict()), float("inf")
    task = progress.add_task(f"{variant:>8}", total=cfg.epochs) if progress else None
    for epoch in range(cfg.epochs):
        net.train()
        run_loss, seen = 0.0, 0
        for idx in _batches(xt.shape[0], cfg.batch_size, gen):
            if len(idx) < 2:  # BatchNorm needs >1 sample; the leftover sample is seen next epoch
                continue
            xb, yb = augment(xt[idx], yt[idx], gen, brightness)
            loss = dice_bce_loss(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run_loss += float(loss.detach()) * len(idx)
            seen += len(idx)
        val = _val_loss(net, xv, yv, cfg.batch_size) if xv.shape[0] else run_loss / max(seen, 1)
        history.append({"epoch": epoch + 1, "train_loss": run_loss / max(seen, 1), "val_loss": val})
        if val < best_loss:
            best_loss, best_state = val, copy.deepcopy(net.state_dict())
        if progress is not None and task is not None:
            progress.update(task, advance=1, description=f"{variant:>8} val {val:.3f}")
    net.load_state_dict(best_state)
    return net.eval(), history


@dataclass
class Fitted:
    """Every model of one training set (a fold, or the final/single split), saved under ``out``."""

    normalisation: dict[str, list[float]]
    thresholds: dict[str, float]
    histories: dict[str, list[dict[str, float]]]
    seconds: dict[str, float]
    architecture: dict[str, dict[str, int]]
    nets: dict[str, torch.nn.Module]


def fit_models(
    cfg: TrainConfig,
    channels: list[str],
    fit: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    out: Path,
    show_progress: bool = True,
) -> Fitted:
    """Normalisation on the fit tiles; U-Nets + forest trained on them; thresholds on training data:
    the trained models' on the validation tiles, the untrained references' (index, LSI) on fit + val."""
    (x_tr_raw, y_tr), (x_va_raw, y_va) = fit, val
    mean, std = fit_normalisation(x_tr_raw)
    x_tr, x_va = (normalise_batch(a, mean, std) for a in (x_tr_raw, x_va_raw))
    bright = Brightness.for_stack(channels, REFLECTANCE, mean, std) if cfg.brightness > 0 else None
    if bright is not None:
        bright = Brightness(bright.channels, bright.shift, cfg.brightness)
    out.mkdir(parents=True, exist_ok=True)
    nets: dict[str, torch.nn.Module] = {}
    histories: dict[str, list[dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
        TimeElapsedColumn(),
        disable=not show_progress,
    ) as progress:
        for variant in VARIANTS:
            t0 = time.perf_counter()
            net, histories[variant] = train_variant(variant, cfg, x_tr, y_tr, x_va, y_va, progress, bright)
            seconds[variant] = round(time.perf_counter() - t0, 2)
            torch.save(net.state_dict(), out / f"{variant}.pt")
            nets[variant] = net
    t0 = time.perf_counter()
    rf = train_random_forest(x_tr, y_tr, cfg.seed, cfg.rf_pixels, cfg.rf_trees)
    seconds["random_forest"] = round(time.perf_counter() - t0, 2)
    save_random_forest(rf, out / "random_forest.joblib")
    stub = UnetRun(out, {"channels": channels, "config": asdict(cfg)})
    thresholds: dict[str, float] = {}
    val_scores = model_scores(stub, x_va_raw, x_va, nets) if x_va.shape[0] else {}
    for name in (*UNETS, "random_forest"):
        thresholds[name] = best_threshold(val_scores[name], y_va) if name in val_scores else 0.5
    untrained = [n for n in reference_names(channels) if n != "random_forest"]
    if untrained:
        x_all_raw = np.concatenate([x_tr_raw, x_va_raw])
        y_all = np.concatenate([y_tr, y_va])
        all_scores = model_scores(stub, x_all_raw, normalise_batch(x_all_raw, mean, std), nets)
        for name in untrained:
            thresholds[name] = best_threshold(all_scores[name], y_all)
    arch = {
        v: {"params": count_params(n), "flops_128": count_flops(n, cfg.tile, cfg.tile, len(channels))}
        for v, n in nets.items()
    }
    return Fitted({"mean": mean, "std": std}, thresholds, histories, seconds, arch, nets)


def base_doc(data_dir: Path, cfg: TrainConfig, meta: dict[str, Any], channels: list[str]) -> dict[str, Any]:
    return {
        "kind": "unet",
        "version": RUN_VERSION,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data_dir": str(Path(data_dir).resolve()),
        "synthetic": bool(meta.get("synthetic", False)),
        "source": meta.get("source", ""),
        "import": meta.get("import", {}),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "config": asdict(cfg),
        "channels": channels,
        "lsi_params": meta.get("lsi_params", {}),
    }


def check_config(data_dir: Path, cfg: TrainConfig, tile_size: int) -> None:
    if tile_size != cfg.tile:
        raise TrainingError(
            f"{data_dir} has {tile_size} px tiles, the config expects {cfg.tile}",
            fix="pass --tile matching the data dir",
        )
    if cfg.tile % (cfg.s2d * 2**cfg.depth):
        raise TrainingError(
            f"tile {cfg.tile} is not a multiple of s2d * 2**depth = {cfg.s2d * 2**cfg.depth}",
            fix="lower --depth or --s2d",
        )
    if cfg.ship not in VARIANTS:
        raise TrainingError(f"--ship {cfg.ship!r} is not a U-Net variant", fix=f"one of {VARIANTS}")


def train_run(data_dir: Path, out: Path, cfg: TrainConfig, show_progress: bool = True) -> dict[str, Any]:
    """Train every model on the blocked split of ``data_dir`` and write RUN_DIR ``out``
    (``cfg.folds >= 2``: k-fold cross-validation by image instead, export.unet.cv)."""
    if cfg.folds:
        from export.unet.cv import train_cv

        return train_cv(data_dir, out, cfg, show_progress)
    tiles = open_tileset(data_dir)
    check_config(data_dir, cfg, int(tiles.meta["tile_size"]))
    channels = tiles.channels
    split = blocked_split(tiles.records, cfg.seed)
    fit, val = tiles.load(split.train), tiles.load(split.val)
    x_te_raw, y_te = tiles.load(split.test)
    fitted = fit_models(cfg, channels, fit, val, out, show_progress)
    doc = base_doc(data_dir, cfg, tiles.meta, channels)
    doc.update(
        {
            "normalisation": fitted.normalisation,
            "split": split.as_dict(),
            "architecture": fitted.architecture,
            "train_seconds": fitted.seconds,
            "history": fitted.histories,
            "thresholds": fitted.thresholds,
        }
    )
    run = UnetRun(out, doc)
    x_te = normalise_batch(x_te_raw, run.mean, run.std)
    test_scores = model_scores(run, x_te_raw, x_te, fitted.nets)
    doc["test_metrics"] = {
        name: json_safe(binary_metrics(test_scores[name], y_te, doc["thresholds"][name]))
        for name in model_names(channels)
    }
    write_run_json(out, doc)
    log.info(
        "wrote U-Net run to %s (test dice enhanced %.3f)", out, doc["test_metrics"]["enhanced"]["dice"] or 0
    )
    return doc
