"""`load_displacement_run(run_dir)`: the run's exportable network for ONNX + INT8 + bundle (contract 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import TrainingError
from agent.features import displacement as fd
from export.displacement import references, store
from export.runs import ExportModel, LoadedRun

MAX_CALIBRATION_WINDOWS = 256


def load_displacement_run(run_dir: Path) -> LoadedRun:
    """The run's chosen model (``export_model``: a CNN with outputs displacement_mm (N, H) and
    exceed_prob (N, H), or a closed-form reference as a tiny graph with the output displacement_mm
    only) with real calibration windows from the training (fit) split, the test windows and targets,
    and the manifest meta (horizons, warning target, residual quantiles, chosen model)."""
    run_dir = Path(run_dir)
    run = store.read_displacement_run(run_dir)
    name = run.get("export_model", "multitask")
    spec = run["models"][name]
    module: Any
    if spec["type"] == "cnn":
        module = store.load_cnn(run_dir, spec["file"], run["arch"])
        outputs = list(fd.OUTPUT_NAMES)
    elif spec["type"] in references.CLOSED_FORM:
        module = references.ReferenceModule(spec["type"], run["meta"]).eval()
        outputs = [fd.OUTPUT_NAMES[0]]
    else:
        raise TrainingError(
            f"{run_dir}: model {name!r} ({spec['type']}) cannot go into a bundle",
            fix="train with --export-model one of the CNNs, moving_average, linear_trend or persistence",
        )
    parts = store.load_parts(run_dir)
    fit, test = parts["fit"], parts["test"]
    complete = np.isfinite(test.y).all(axis=1)
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
    meta["output_names"] = outputs
    if spec["type"] in references.CLOSED_FORM:
        meta["evaluator"] = "closed_form"  # the gateway evaluates the formula in numpy (exact)
    meta["choice_rule"] = run.get("choice_rule", "")
    meta["run_mode"] = run.get("mode", "train")
    meta["calibration_set"] = description
    model = ExportModel(
        name="displacement",
        task="displacement_forecast",
        module=module,
        input_names=[fd.INPUT_NAME],
        output_names=outputs,
        calibration_inputs={fd.INPUT_NAME: fit.x[idx].astype(np.float32)},
        calibration_description=description,
        # windows with every horizon's target observed (the accuracy table needs complete rows)
        test_inputs={fd.INPUT_NAME: test.x[complete].astype(np.float32)},
        test_targets=_targets(test.y[complete], test.event[complete], outputs),
        meta=meta,
    )
    return LoadedRun(kind="displacement", run_dir=run_dir, models=[model])


def _targets(y: np.ndarray, event: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
    out = {fd.OUTPUT_NAMES[0]: y.astype(np.float32)}
    if fd.OUTPUT_NAMES[1] in outputs:
        out[fd.OUTPUT_NAMES[1]] = event.astype(np.float32)
    return out
