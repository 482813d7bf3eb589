"""`train unet --folds K`: k-fold cross-validation by image, then one final model on every image.

For fold k the test images are fold k's scenes (whole images: no tile of a test image is seen in
training). The remaining images are split again by image into fit (weights, normalisation) and an
inner validation set (early stopping, the trained models' thresholds); untrained references (-GRVI,
LSI) take their threshold on all training images of the fold. Nothing of fold k's test images chooses
anything. After the folds, the final model (what `bundle` exports) is trained the same way on every
image (its inner validation images choose the epoch and threshold).

RUN_DIR: ``run.json`` (``cv``: k, seed, per fold the test images, fit/val/test tile ids, normalisation,
thresholds; top-level ``split``/``normalisation``/``thresholds`` of the final model),
``folds/fold<k>/{plain,hybrid,enhanced}.pt, random_forest.joblib, fold.json``, the final models at the
top. A fold whose ``fold.json`` matches the config is reused, so ``--only-fold K`` processes can train
folds in parallel and a last run without it finishes (and a stopped run resumes).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent.errors import TrainingError
from export.raster.tiles import open_tileset
from export.unet.data import inner_split, kfold_by_scene
from export.unet.run import UnetRun, write_run_json
from export.unet.train import TrainConfig, base_doc, check_config, fit_models

log = logging.getLogger(__name__)


def _fold_config(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in asdict(cfg).items() if k != "only_folds"}


def _finished_fold(
    fold_dir: Path, cfg: TrainConfig, test_ids: list[str], name: str = "fold.json"
) -> dict[str, Any] | None:
    """A fold trained earlier (or by a parallel `--only-fold` process) with the same config and test ids."""
    path = fold_dir / name
    if not path.is_file():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.pop("config", None) != _fold_config(cfg) or doc["split"]["test"] != test_ids:
        return None
    return doc


def train_cv(data_dir: Path, out: Path, cfg: TrainConfig, show_progress: bool = True) -> dict[str, Any]:
    tiles = open_tileset(data_dir)
    check_config(data_dir, cfg, int(tiles.meta["tile_size"]))
    channels = tiles.channels
    by_id = {r.id: r for r in tiles.records}
    folds = kfold_by_scene(tiles.records, cfg.folds, cfg.seed)
    all_ids = [r.id for r in tiles.records]
    doc = base_doc(data_dir, cfg, tiles.meta, channels)
    fold_docs: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for k, test_ids in enumerate(folds):
        test_set = set(test_ids)
        train_ids = [i for i in all_ids if i not in test_set]
        fit_ids, val_ids = inner_split(tiles.records, train_ids, cfg.seed + k)
        fold_dir = out / "folds" / f"fold{k}"
        done = _finished_fold(fold_dir, cfg, test_ids)
        if done is not None:
            log.info("fold %d/%d: reusing the finished fold in %s", k + 1, cfg.folds, fold_dir)
            fold_docs.append(done)
            continue
        if cfg.only_folds and k not in cfg.only_folds:
            continue
        log.info(
            "fold %d/%d: %d fit, %d val, %d test tiles",
            k + 1,
            cfg.folds,
            len(fit_ids),
            len(val_ids),
            len(test_ids),
        )
        fitted = fit_models(cfg, channels, tiles.load(fit_ids), tiles.load(val_ids), fold_dir, show_progress)
        fold_doc = {
            "fold": k,
            "test_images": sorted({by_id[i].scene for i in test_ids}),
            "val_images": sorted({by_id[i].scene for i in val_ids}),
            "split": {"train": fit_ids, "val": val_ids, "test": test_ids},
            "normalisation": fitted.normalisation,
            "thresholds": fitted.thresholds,
            "train_seconds": fitted.seconds,
            "best_epoch": {
                v: min(h, key=lambda e: e["val_loss"])["epoch"] for v, h in fitted.histories.items()
            },
        }
        (fold_dir / "fold.json").write_text(json.dumps({"config": _fold_config(cfg), **fold_doc}, indent=1))
        fold_docs.append(fold_doc)
    fit_ids, val_ids = inner_split(tiles.records, all_ids, cfg.seed + cfg.folds)
    final_doc = _finished_fold(out, cfg, [], "final.json")
    if final_doc is None and (not cfg.only_folds or -1 in cfg.only_folds):
        final = fit_models(cfg, channels, tiles.load(fit_ids), tiles.load(val_ids), out, show_progress)
        final_doc = {
            "split": {"train": fit_ids, "val": val_ids, "test": [], "method": "final model: every image"},
            "normalisation": final.normalisation,
            "thresholds": final.thresholds,
            "architecture": final.architecture,
            "train_seconds": final.seconds,
            "history": final.histories,
        }
        (out / "final.json").write_text(json.dumps({"config": _fold_config(cfg), **final_doc}, indent=1))
    if cfg.only_folds:
        log.info(
            "trained folds %s only (--only-fold; -1 = final): rerun without it to finish", cfg.only_folds
        )
        return {"cv_partial": [d["fold"] for d in fold_docs], "cv_metrics": {}}
    if final_doc is None:  # unreachable: trained above unless --only-fold
        raise TrainingError("the final model was not trained", fix="rerun without --only-fold")
    doc.update(
        {
            "cv": {
                "k": cfg.folds,
                "by": "scene (image)",
                "images": len({r.scene for r in tiles.records}),
                "folds": fold_docs,
            },
            **final_doc,
            "cv_seconds": round(time.perf_counter() - t_start, 1),
        }
    )
    write_run_json(out, doc)
    from export.unet.cv_eval import evaluate_cv

    report = evaluate_cv(UnetRun(out, doc))
    doc["cv_metrics"] = {name: m["pooled"] for name, m in report["models"].items()}
    write_run_json(out, doc)
    log.info("wrote %d-fold U-Net run to %s", cfg.folds, out)
    return doc
