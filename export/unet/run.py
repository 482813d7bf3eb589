"""A U-Net RUN_DIR: what ``train unet`` writes, how to load it back, and the export view of it.

RUN_DIR layout::

    run.json              kind "unet", data dir, config, channels, normalisation, split, thresholds,
                          LSI params, per-model files, training history, test metrics
    enhanced.pt plain.pt hybrid.pt      torch state dicts (training form, with BatchNorm)
    random_forest.joblib                the per-pixel random forest
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.errors import TrainingError
from agent.features.raster_channels import CHANNELS, normalise
from export.raster.tiles import TileSet, open_tileset
from export.runs import ExportModel, LoadedRun, read_run_json
from export.unet.model import VARIANTS, ProbabilityHead, UNet, Variant
from export.unet.reparam import reparameterise

log = logging.getLogger(__name__)
RUN_VERSION = 1
CALIBRATION_TILES = 16


@dataclass
class UnetRun:
    run_dir: Path
    doc: dict[str, Any]

    @property
    def channels(self) -> list[str]:
        return [str(c) for c in self.doc.get("channels", CHANNELS)]

    @property
    def shipped_variant(self) -> Variant:
        v = str(self.doc.get("config", {}).get("ship", "enhanced"))
        return v if v in VARIANTS else "enhanced"

    @property
    def mean(self) -> list[float]:
        return list(self.doc["normalisation"]["mean"])

    @property
    def std(self) -> list[float]:
        return list(self.doc["normalisation"]["std"])

    def tileset(self) -> TileSet:
        data_dir = Path(self.doc["data_dir"])
        if not (data_dir / "tiles.json").is_file():
            raise TrainingError(
                f"the run's data dir {data_dir} is gone",
                fix="restore the tile data dir at that path (run.json data_dir) or retrain",
            )
        return open_tileset(data_dir)

    def load_split(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw x, normalised x, y) of a split ('train' | 'val' | 'test')."""
        ids = list(self.doc["split"][name])
        x_raw, y = self.tileset().load(ids)
        return x_raw, normalise_batch(x_raw, self.mean, self.std), y

    def model(self, variant: Variant, fold: int | None = None) -> UNet:
        """A trained network; ``fold`` k: the one trained without fold k's images (CV runs)."""
        net = UNet(len(self.channels), variant=variant, **self.architecture())
        path = self.model_dir(fold) / f"{variant}.pt"
        if not path.is_file():
            raise TrainingError(f"{path} is missing", fix="retrain the run with `agent-export train unet`")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.eval()

    def architecture(self) -> dict[str, int]:
        """The network's shape options (runs written before ``stem`` / ``s2d`` existed: 0 / 1)."""
        cfg = self.doc["config"]
        return {
            "base": int(cfg["base"]),
            "depth": int(cfg["depth"]),
            "stem": int(cfg.get("stem", 0)),
            "s2d": int(cfg.get("s2d", 1)),
        }

    def model_dir(self, fold: int | None = None) -> Path:
        return self.run_dir if fold is None else self.run_dir / "folds" / f"fold{fold}"


def normalise_batch(x_raw: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    out = np.empty_like(x_raw, dtype=np.float32)
    replaced = 0
    for i in range(x_raw.shape[0]):
        out[i], n_bad = normalise(x_raw[i], mean, std)
        replaced += n_bad
    if replaced:
        log.warning("normalisation replaced %d non-finite channel values by the training mean", replaced)
    return out


def open_run(run_dir: Path) -> UnetRun:
    doc = read_run_json(run_dir)
    if doc.get("kind") != "unet":
        raise TrainingError(
            f"{run_dir}/run.json has kind {doc.get('kind')!r}, not 'unet'",
            fix="pass a RUN_DIR written by `agent-export train unet`",
        )
    if doc.get("version") != RUN_VERSION:
        raise TrainingError(
            f"{run_dir}/run.json is version {doc.get('version')}, expected {RUN_VERSION}",
            fix="retrain with this version of agent-export",
        )
    return UnetRun(Path(run_dir), doc)


def write_run_json(run_dir: Path, doc: dict[str, Any]) -> None:
    (run_dir / "run.json").write_text(json.dumps(doc, indent=1, allow_nan=False))


def export_module(run: UnetRun, variant: Variant | None = None, fold: int | None = None) -> torch.nn.Module:
    """The re-parameterised (two 3x3, no zero taps) eval network + sigmoid head: normalised tiles -> p."""
    return ProbabilityHead(reparameterise(run.model(variant or run.shipped_variant, fold))).eval()


def stitching_geometry(tile: int) -> dict[str, int]:
    """Overlap / margin of the gateway's tiling: 32 / 16 px, scaled down for small tiles (<= 64 px)."""
    return {"overlap": 32, "margin": 16} if tile > 64 else {"overlap": tile // 4, "margin": tile // 8}


def fold_view(run: UnetRun, fold: int) -> UnetRun:
    """A CV run seen as fold ``fold``'s run: its split (test = the fold's images), normalisation,
    thresholds and networks; so a fold model goes through the same export as the final one."""
    folds = run.doc.get("cv", {}).get("folds", [])
    if not 0 <= fold < len(folds):
        raise TrainingError(
            f"{run.run_dir} has no fold {fold} ({len(folds)} folds)", fix="pass a fold of a --folds run"
        )
    fd = folds[fold]
    doc = {k: v for k, v in run.doc.items() if k != "cv"}
    doc.update({"split": fd["split"], "normalisation": fd["normalisation"], "thresholds": fd["thresholds"]})
    return UnetRun(run.model_dir(fold), doc)


def load_unet_run(run_dir: Path, fold: int | None = None) -> LoadedRun:
    """The export view of a run (``fold`` k: of the CV model trained without fold k's images)."""
    run = open_run(run_dir) if fold is None else fold_view(open_run(run_dir), fold)
    module = export_module(run)
    _, x_train, _ = run.load_split("train")
    if x_train.shape[0] == 0:
        raise TrainingError(f"{run_dir}: the training split is empty", fix="retrain with more tiles")
    rng = np.random.default_rng(int(run.doc["seed"]))
    pick = np.sort(rng.choice(x_train.shape[0], size=min(CALIBRATION_TILES, x_train.shape[0]), replace=False))
    ids = [run.doc["split"]["train"][i] for i in pick]
    test_split = "test" if run.doc["split"]["test"] else "val"
    _, x_test, y_test = run.load_split(test_split)
    tile = int(run.doc["config"]["tile"])
    variant = run.shipped_variant
    meta = {
        "channels": run.channels,
        "channel_order": "NCHW",
        "normalisation": {"mean": run.mean, "std": run.std, "fitted_on": "train split", "nan_to": 0.0},
        "tile_size": tile,
        "threshold": float(run.doc["thresholds"][variant]),
        "lsi_params": run.doc["lsi_params"],
        "variant": variant,
        "reparameterised": True,
        "architecture": run.architecture(),
        "synthetic_data": bool(run.doc.get("synthetic", False)),
        "stitching": {**stitching_geometry(tile), "module": "agent.features.tiling"},
        "source": run.doc.get("source", ""),
        "accuracy_inputs": f"{test_split} split ({x_test.shape[0]} tiles)"
        + (
            ""
            if test_split == "test"
            else ": the final model's inner validation images (early stopping "
            "and threshold, never its weights); the cross-validated figures are in run.json cv"
        ),
    }
    model = ExportModel(
        name="unet",
        task="susceptibility_map",
        module=module,
        input_names=["tiles"],
        output_names=["probability"],
        calibration_inputs={"tiles": x_train[pick].astype(np.float32)},
        calibration_description=(
            f"{len(pick)} of {x_train.shape[0]} training-split tiles "
            f"({tile}x{tile}, channels {run.channels}, "
            "normalised) "
            f"from {run.doc['data_dir']} (synthetic={run.doc.get('synthetic', False)}), seeded pick: {ids}"
        ),
        test_inputs={"tiles": x_test.astype(np.float32)},
        test_targets={"probability": y_test[:, None].astype(np.float32)},
        meta=meta,
    )
    return LoadedRun(kind="unet", run_dir=Path(run_dir), models=[model])


__all__ = ["VARIANTS", "UnetRun", "load_unet_run", "open_run"]
