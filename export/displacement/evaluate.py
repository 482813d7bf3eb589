"""`evaluate displacement`: every model of a run on its held-back test part, side by side.

The primary warning threshold defaults to the run's ``primary_threshold_mm`` (the 90th percentile of
the training part's next-step displacement, pooled over stations). Intervals use each model's own
split-conformal half-width from the calibration part (which precedes the test part).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from export.displacement import plots, store
from export.displacement.metrics import model_metrics, probability_metrics
from export.displacement.pipeline import predict_model, primary_index

log = logging.getLogger(__name__)
EVALUATION_JSON = "evaluation.json"


def evaluate_run(run_dir: Path, threshold_mm: float | None = None, make_plots: bool = True) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run = store.read_displacement_run(run_dir)
    parts = store.load_parts(run_dir)
    test = parts["test"]
    meta = run["meta"]
    thr = float(meta["primary_threshold_mm"]) if threshold_mm is None else float(threshold_mm)
    nominal = float(meta["conformal_nominal"])
    halves = run["conformal_half_width_mm"]
    preds: dict[str, np.ndarray] = {}
    models: dict[str, dict[str, Any]] = {}
    for name in run["models"]:
        pred, prob = predict_model(run_dir, run, name, test)
        half = halves.get(name)
        preds[name] = pred
        m = model_metrics(test.y, pred, thr, float("nan") if half is None else float(half), nominal)
        if prob is not None and run["models"][name].get("aux", False):
            j = primary_index(meta)
            cutoff = float(run.get("exceed_prob_cutoff", {}).get(name, 0.5))
            m.update(probability_metrics(test.y, prob[:, j], float(meta["primary_threshold_mm"]), cutoff))
        models[name] = m
    per_station: dict[str, dict[str, float]] = {}
    for i, station in enumerate(run["stations"]):
        sel = test.station == i
        if sel.any():
            per_station[station] = {
                name: float(np.mean(np.abs(p[sel] - test.y[sel]))) for name, p in preds.items()
            } | {"test_steps": int(sel.sum())}
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "mode": run.get("mode", "train"),
        "test_steps": len(test),
        "threshold_mm": thr,
        "threshold_definition": f"{meta.get('primary_threshold_percentile', 90)}th percentile of the "
        "training part's next-step displacement"
        if threshold_mm is None
        else "given on the command line",
        "observed_warnings": int(np.sum(test.y > thr)),
        "stations": run["stations"],
        "synthetic": bool(meta.get("synthetic", False)),
        "models": models,
        "mae_per_station_mm": per_station,
    }
    result = store.jsonable(result)
    (run_dir / EVALUATION_JSON).write_text(json.dumps(result, indent=2) + "\n")
    if make_plots:
        result["plots"] = [
            str(p) for p in plots.plot_test(run_dir, run, test, preds, {k: halves.get(k) for k in preds}, thr)
        ]
        (run_dir / EVALUATION_JSON).write_text(json.dumps(result, indent=2) + "\n")
    return result
