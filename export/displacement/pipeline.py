"""`train displacement`: read site series, cut chronological windows, train every model, write RUN_DIR."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from agent.features.site_series import SiteSeries, read_site_series, to_iso
from export.displacement import references, store
from export.displacement.calibration import calibrate, predict_model
from export.displacement.dataset import DEFAULT_ALARM_K, DEFAULT_HORIZONS, DEFAULT_WINDOW, prepare
from export.displacement.train import DEFAULT_EPOCHS, arch_for, train_cnn

__all__ = ["calibrate", "predict_model", "source_entry", "timeline", "train_run"]

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


def timeline(series: Sequence[SiteSeries], meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per step of every station: time, station index and the warning event (for episode scoring)."""
    from export.displacement.dataset import event_labels

    ts, st, ev = [], [], []
    for i, s in enumerate(series):
        w = meta["station_warnings"].get(s.station, meta["warning"])
        e, _ = event_labels(s, meta["station_projections"].get(s.station, meta["projection"]), w, [1])
        ts.append(s.times)
        st.append(np.full(len(s), i, dtype=np.int64))
        ev.append(e.astype(np.int8))
    return {"tl_t": np.concatenate(ts), "tl_station": np.concatenate(st), "tl_event": np.concatenate(ev)}


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
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    alarm_k: int = DEFAULT_ALARM_K,
    alarm_velocity: float | None = None,
    export_model: str | None = None,
    task: TaskFactory = no_progress,
) -> dict[str, Any]:
    t0 = time.monotonic()
    series = [read_site_series(p) for p in site_csvs]
    prep = prepare(
        series,
        train_fraction=train_fraction,
        window=window,
        test_from=test_from,
        horizons=horizons,
        alarm_k=alarm_k,
        alarm_velocity=alarm_velocity,
    )
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
    for name in (*references.CLOSED_FORM, *references.RULES):
        models[name] = {"type": name}
    store.save_parts(out, {"fit": prep.fit, "cal": prep.cal, "test": prep.test}, timeline(series, prep.meta))
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
        "export_model_override": export_model,
        "windows": {"fit": len(prep.fit), "cal": len(prep.cal), "test": len(prep.test)},
        "dropped_windows": prep.counts,
        "timings_s": timings,
    }
    calibrate(out, run, prep.cal)
    run["timings_s"]["total"] = round(time.monotonic() - t0, 2)
    store.write_run_json(out, run)
    return run
