"""`train displacement`: read site series, cut chronological windows, train every model, write RUN_DIR."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import TrainingError
from agent.features.site_series import SiteSeries, read_site_series, to_iso
from export.displacement import references, store
from export.displacement.dataset import DEFAULT_WINDOW, Part, prepare
from export.displacement.metrics import best_probability_cutoff, conformal_half_width
from export.displacement.train import DEFAULT_EPOCHS, arch_for, predict_cnn, train_cnn

log = logging.getLogger(__name__)

# (task description, total) -> advance(n) callback; the CLI maps it onto rich progress bars.
TaskFactory = Callable[[str, int], Callable[[int], None]]


def no_progress(_desc: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def per_epoch(advance: Callable[[int], None]) -> Callable[[int, float], None]:
    """Adapt a progress-bar advance callback to the trainer's (epoch, loss) callback."""
    return lambda _epoch, _loss: advance(1)


def source_entry(path: Path, series: SiteSeries) -> dict[str, Any]:
    return {
        "path": str(Path(path).resolve()),
        "station": series.station,
        "site": series.meta.get("site", ""),
        "steps": len(series),
        "step": series.step,
        "synthetic": series.synthetic,
        "source": series.meta.get("source", ""),
        "repairs": series.repairs or series.meta.get("repairs", ""),
    }


def predict_model(
    run_dir: Path, run: dict[str, Any], name: str, part: Part
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (mm) of one model of the run on a part; exceedance probabilities for CNNs."""
    spec = run["models"][name]
    kind = spec["type"]
    meta = run["meta"]
    if kind == "cnn":
        pred, prob = predict_cnn(store.load_cnn(run_dir, spec["file"], run["arch"]), part.x)
        return pred, prob
    if kind == "gbr":
        return references.predict_gbr(store.load_pickle(run_dir, spec["file"]), part.x), None
    if kind == "persistence":
        return references.persistence(part.x, meta), None
    if kind == "moving_average":
        return references.moving_average(part.x, meta), None
    raise TrainingError(
        f"{run_dir}/run.json: model {name!r} has unknown type {kind!r}",
        fix="re-run the training with this version of agent-export",
    )


def primary_index(meta: dict[str, Any]) -> int:
    """Index of the primary warning threshold among ``thresholds_mm`` (the exceedance-head column)."""
    thresholds = np.asarray(meta["thresholds_mm"], dtype=np.float64)
    return int(np.argmin(np.abs(thresholds - float(meta["primary_threshold_mm"]))))


def calibrate(run_dir: Path, run: dict[str, Any], cal: Part) -> None:
    """On the calibration part: every model's split-conformal half-width (``conformal_half_width_mm``) and
    each multi-task CNN's F2-best cutoff on P(exceed primary threshold) (``exceed_prob_cutoff``); both
    are stored in ``run``, and the exported model's in ``run["meta"]``."""
    meta = run["meta"]
    nominal = float(meta["conformal_nominal"])
    j = primary_index(meta)
    halves, cutoffs = {}, {}
    for name, spec in run["models"].items():
        pred, prob = predict_model(run_dir, run, name, cal)
        halves[name] = conformal_half_width(np.abs(pred - cal.y), nominal)
        if prob is not None and spec.get("aux", False):
            cutoffs[name] = best_probability_cutoff(cal.y, prob[:, j], float(meta["primary_threshold_mm"]))
    run["conformal_half_width_mm"] = halves
    run["exceed_prob_cutoff"] = cutoffs
    export_name = run.get("export_model", "multitask")
    meta["conformal_half_width_mm"] = halves[export_name]
    meta["exceed_prob_cutoff"] = cutoffs.get(export_name, 0.5)


def train_run(
    site_csvs: Sequence[Path],
    out: Path,
    *,
    train_fraction: float = 0.7,
    test_from: float | None = None,
    seed: int = 0,
    epochs: int = DEFAULT_EPOCHS,
    window: int = DEFAULT_WINDOW,
    gbr_estimators: int = 150,
    task: TaskFactory = no_progress,
) -> dict[str, Any]:
    t0 = time.monotonic()
    series = [read_site_series(p) for p in site_csvs]
    prep = prepare(series, train_fraction=train_fraction, window=window, test_from=test_from)
    meta = prep.meta
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log.info(
        "windows: fit %d, cal %d, test %d; features %s; drops %s",
        len(prep.fit),
        len(prep.cal),
        len(prep.test),
        meta["feature_names"],
        prep.counts,
    )
    models: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    for name, aux in (("multitask", True), ("single_task", False)):
        t = time.monotonic()
        model, scale = train_cnn(
            prep.fit,
            meta,
            seed=seed,
            epochs=epochs,
            aux=aux,
            progress=per_epoch(task(f"train {name} CNN", epochs)),
        )
        models[name] = {
            "type": "cnn",
            "file": store.save_cnn(out, name, model),
            "aux": aux,
            "target_scale": scale,
        }
        timings[name] = round(time.monotonic() - t, 2)
    t = time.monotonic()
    adv = task("train gradient boosting", 1)
    gbr = references.fit_gbr(prep.fit.x, prep.fit.y, seed, gbr_estimators)
    adv(1)
    models["gbr"] = {"type": "gbr", "file": store.save_pickle(out, "gbr.pkl", gbr)}
    timings["gbr"] = round(time.monotonic() - t, 2)
    models["persistence"] = {"type": "persistence"}
    models["moving_average"] = {"type": "moving_average"}
    store.save_parts(out, {"fit": prep.fit, "cal": prep.cal, "test": prep.test})
    run: dict[str, Any] = {
        "kind": "displacement",
        "mode": "train",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seed": seed,
        "train_fraction": train_fraction if test_from is None else None,
        "test_from": None if test_from is None else to_iso(test_from),
        "epochs": epochs,
        "sources": [source_entry(p, s) for p, s in zip(site_csvs, series, strict=True)],
        "stations": prep.stations,
        "arch": arch_for(meta).to_dict(),
        "meta": meta,
        "models": models,
        "export_model": "multitask",
        "windows": {"fit": len(prep.fit), "cal": len(prep.cal), "test": len(prep.test)},
        "dropped_windows": prep.counts,
        "timings_s": timings,
    }
    calibrate(out, run, prep.cal)
    run["timings_s"]["total"] = round(time.monotonic() - t0, 2)
    store.write_run_json(out, run)
    return run
