"""`load_displacement_run(run_dir)`: the run's exportable network for ONNX + INT8 + bundle (contract 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.features import displacement as fd
from export.displacement import store
from export.runs import ExportModel, LoadedRun

MAX_CALIBRATION_WINDOWS = 256


def load_displacement_run(run_dir: Path) -> LoadedRun:
    """The multi-task CNN (eval mode, outputs mm and exceedance probabilities) with real calibration
    windows from the training (fit) split, the test windows and targets, and the manifest meta."""
    run_dir = Path(run_dir)
    run = store.read_displacement_run(run_dir)
    name = run.get("export_model", "multitask")
    spec = run["models"][name]
    module = store.load_cnn(run_dir, spec["file"], run["arch"])
    parts = store.load_parts(run_dir)
    fit, test = parts["fit"], parts["test"]
    n = min(len(fit), MAX_CALIBRATION_WINDOWS)
    # evenly spread over the fit part (chronological order per station), deterministic
    idx = np.unique(np.linspace(0, len(fit) - 1, n).round().astype(int)) if n else np.zeros(0, int)
    stations = run["stations"]
    files = ", ".join(f"{s['station']} ({Path(s['path']).name})" for s in run["sources"])
    synthetic = " SYNTHETIC" if run["meta"].get("synthetic") else ""
    description = (
        f"{idx.size} of {len(fit)}{synthetic} training-split windows ({run['meta']['window']} steps x "
        f"{len(run['meta']['feature_names'])} features, normalised) spread evenly over stations "
        f"{', '.join(stations)} from {files}"
    )
    meta: dict[str, Any] = dict(run["meta"])
    meta["model_variant"] = name
    meta["run_mode"] = run.get("mode", "train")
    meta["calibration_set"] = description
    model = ExportModel(
        name="displacement",
        task="displacement_forecast",
        module=module,
        input_names=[fd.INPUT_NAME],
        output_names=list(fd.OUTPUT_NAMES),
        calibration_inputs={fd.INPUT_NAME: fit.x[idx].astype(np.float32)},
        calibration_description=description,
        test_inputs={fd.INPUT_NAME: test.x.astype(np.float32)},
        test_targets={
            fd.OUTPUT_NAMES[0]: test.y.astype(np.float32)[:, None],
            fd.OUTPUT_NAMES[1]: (test.y[:, None] > np.asarray(meta["thresholds_mm"])[None, :]).astype(
                np.float32
            ),
        },
        meta=meta,
    )
    return LoadedRun(kind="displacement", run_dir=run_dir, models=[model])
