"""Few-shot adaptation to a new station (seed 001): two-stage transfer fine-tuning.

The target station contributes only its FIRST ``steps`` steps (its first weeks of history): their
first 80 % (by target step) fine-tune, their last 20 % calibrate the conformal interval; everything
after them is the test part. The source run's features, normalisation and warning thresholds are kept
(one site, one set of thresholds); the target's direction of motion is fitted on its ``steps`` steps.

Models written to the new RUN_DIR:
- ``multitask``: the source multi-task CNN, stage 1 = frozen feature extractor, heads trained at
  lr 3e-3; stage 2 = all layers at lr 3e-4 (the regression target keeps the SOURCE scaling); both
  stages early-stop on the chronologically last 15 % of the fine-tune windows (patience 10);
- ``source_only``: the source multi-task CNN unchanged;
- ``scratch``: the same architecture trained from random weights on the same few steps
  (up to stage-1 + stage-2 epochs at lr 3e-3, the same early stopping);
- ``persistence``, ``moving_average``, ``linear_trend`` and the kinematic rules.
The target's warning settings (V, K) and noise are derived from its own ``steps`` steps (V is kept
when the source run was given one).
"""

from __future__ import annotations

import copy
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import TrainingError
from agent.features import displacement as fd
from agent.features.forecast_dist import horizons_of
from agent.features.site_series import read_site_series
from export.displacement import references, store
from export.displacement.calibration import calibrate
from export.displacement.dataset import CAL_FRACTION, station_warning, station_windows
from export.displacement.pipeline import TaskFactory, no_progress, per_epoch, source_entry, timeline
from export.displacement.train import fit_cnn, split_validation, train_cnn

log = logging.getLogger(__name__)

STAGE1_EPOCHS = 60
STAGE2_EPOCHS = 60
STAGE1_LR = 3e-3
STAGE2_LR = 3e-4


def finetune_run(
    source_dir: Path,
    target_csv: Path,
    steps: int,
    out: Path,
    *,
    seed: int = 0,
    stage1_epochs: int = STAGE1_EPOCHS,
    stage2_epochs: int = STAGE2_EPOCHS,
    task: TaskFactory = no_progress,
) -> dict[str, Any]:
    t0 = time.monotonic()
    source_dir, out = Path(source_dir), Path(out)
    src = store.read_displacement_run(source_dir)
    series = read_site_series(target_csv)
    meta = copy.deepcopy(src["meta"])
    if series.step != meta["step"]:
        raise TrainingError(
            f"target step {series.step} differs from the source run's {meta['step']}",
            fix="fine-tune on a series with the same step as the source stations",
        )
    if not 0 < steps < len(series) - 1:
        raise TrainingError(
            f"--steps {steps} must be between 1 and {len(series) - 2} for {series.station} "
            f"({len(series)} steps)",
            fix="give fewer adaptation steps so that a test part remains",
        )
    for feat, col in fd.OPTIONAL_FEATURES.items():
        if feat in meta["feature_names"] and not series.slice(0, steps).has_data(col):
            raise TrainingError(
                f"the source model uses {feat!r} but {series.station} has no {col!r} "
                f"in its first {steps} steps",
                fix=f"import the target with {col!r}, or train the source without it",
            )
    projection = fd.fit_projection(series, steps)
    meta["projection"] = projection
    meta["station_projections"] = {series.station: projection}
    src_warning = meta["warning"]
    warning, noise = station_warning(
        series,
        projection,
        steps,
        horizons_of(meta),
        int(src_warning["k_steps"]),
        None
        if str(src_warning.get("velocity_source", "")).startswith("derived")
        else float(src_warning["velocity_mm_per_step"]),
    )
    meta["warning"] = warning
    meta["station_warnings"] = {series.station: warning}
    meta["noise"] = {series.station: noise}
    counts: dict[str, int] = {}
    bounds = (int(steps * (1.0 - CAL_FRACTION)), steps)
    fit, cal, test = station_windows(series, 0, meta, projection, bounds, counts, warning)
    if len(fit) < 2 or len(cal) < 1 or len(test) < 1:
        raise TrainingError(
            f"{series.station}: {len(fit)} fine-tune, {len(cal)} calibration, {len(test)} test windows "
            "with data",
            fix="give more --steps (or a series with fewer gaps at its start)",
        )
    spec = src["models"]["multitask"]
    source_model = store.load_cnn(source_dir, spec["file"], src["arch"])
    thresholds = list(meta["thresholds_mm"])
    out.mkdir(parents=True, exist_ok=True)
    models: dict[str, dict[str, Any]] = {}
    models["source_only"] = {
        "type": "cnn",
        "file": store.save_cnn(out, "source_only", source_model),
        "aux": True,
    }
    # two-stage fine-tuning, keeping the source target scaling
    mean, std = spec.get("target_scale", (0.0, 1.0))
    tuned = copy.deepcopy(source_model)
    tuned.unfold_target_scaling(mean, std)
    tune_part, held = split_validation(fit)
    val = held if len(held) >= 2 else None
    if val is None:
        tune_part = fit
    adv = task("stage 1: heads (extractor frozen)", stage1_epochs)
    for p in tuned.extractor_parameters():
        p.requires_grad_(False)
    fit_cnn(
        tuned,
        tune_part,
        thresholds,
        seed=seed,
        epochs=stage1_epochs,
        aux=True,
        lr=STAGE1_LR,
        params=tuned.head_parameters(),
        target_scale=(mean, std),
        progress=per_epoch(adv),
        val=val,
    )
    for p in tuned.extractor_parameters():
        p.requires_grad_(True)
    adv = task("stage 2: all layers, low rate", stage2_epochs)
    fit_cnn(
        tuned,
        tune_part,
        thresholds,
        seed=seed + 1,
        epochs=stage2_epochs,
        aux=True,
        lr=STAGE2_LR,
        target_scale=(mean, std),
        progress=per_epoch(adv),
        val=val,
    )
    tuned.fold_target_scaling(mean, std)
    models["multitask"] = {
        "type": "cnn",
        "file": store.save_cnn(out, "multitask", tuned),
        "aux": True,
        "target_scale": [mean, std],
    }
    adv = task("scratch CNN on the same steps", stage1_epochs + stage2_epochs)
    scratch, scale = train_cnn(
        fit, meta, seed=seed, epochs=stage1_epochs + stage2_epochs, aux=True, progress=per_epoch(adv)
    )
    models["scratch"] = {
        "type": "cnn",
        "file": store.save_cnn(out, "scratch", scratch),
        "aux": True,
        "target_scale": list(scale),
    }
    for name in (*references.CLOSED_FORM, *references.RULES):
        models[name] = {"type": name}
    store.save_parts(out, {"fit": fit, "cal": cal, "test": test}, timeline([series], meta))
    run: dict[str, Any] = {
        "kind": "displacement",
        "mode": "finetune",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "source_run": str(source_dir.resolve()),
        "source_stations": src["stations"],
        "adaptation_steps": steps,
        "stage_epochs": [stage1_epochs, stage2_epochs],
        "stage_lr": [STAGE1_LR, STAGE2_LR],
        "sources": [source_entry(Path(target_csv), series)],
        "stations": [series.station],
        "arch": src["arch"],
        "meta": meta,
        "models": models,
        "windows": {"fit": len(fit), "cal": len(cal), "test": len(test)},
        "dropped_windows": counts,
    }
    calibrate(out, run, cal)
    run["timings_s"] = {"total": round(time.monotonic() - t0, 2)}
    store.write_run_json(out, run)
    log.info("fine-tuned on %s: windows %s", series.station, run["windows"])
    return run
