"""What a training run directory is, for the export step (ONNX, INT8, bundle).

A RUN_DIR written by ``agent-export train displacement|unet`` holds ``run.json`` with at least
``{"kind": "displacement" | "unet", ...}``. ``load_run`` dispatches on ``kind`` to the package that
trained it, which returns a :class:`LoadedRun`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.errors import TrainingError


@dataclass
class ExportModel:
    """One network of a run, ready to export."""

    name: str  # model name in the bundle, e.g. "displacement" or "unet"
    task: str  # "displacement_forecast" | "susceptibility_map"
    module: torch.nn.Module  # eval mode; for the U-Net the re-parameterised (5x5) network
    input_names: list[str]
    output_names: list[str]
    # Real calibration / golden inputs from the training split: name -> float32 array, batch-first.
    calibration_inputs: dict[str, np.ndarray]
    calibration_description: str  # which windows/tiles, how many, from which files
    # Test-split inputs and targets for FP32 vs INT8 accuracy reporting.
    test_inputs: dict[str, np.ndarray]
    test_targets: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)  # feature names/order, normalisation, thresholds, ...


@dataclass
class LoadedRun:
    kind: str
    run_dir: Path
    models: list[ExportModel]


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise TrainingError(
            f"{path} not found: {run_dir} is not a training run directory",
            fix="pass a directory written by `agent-export train displacement|unet --out RUN_DIR`",
        )
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def load_run(run_dir: Path) -> LoadedRun:
    kind = read_run_json(run_dir).get("kind")
    if kind == "displacement":
        from export.displacement.run import load_displacement_run

        return load_displacement_run(Path(run_dir))
    if kind == "unet":
        from export.unet.run import load_unet_run

        return load_unet_run(Path(run_dir))
    raise TrainingError(
        f"{run_dir}/run.json has unknown kind {kind!r}",
        fix="expected 'displacement' or 'unet'; retrain with this version of agent-export",
    )
