"""What a training run directory is, for the export step (ONNX, INT8, bundle).

A RUN_DIR written by ``agent-export train displacement|unet`` holds ``run.json`` with at least
``{"kind": "displacement" | "unet", ...}``. This module is the contract only (a leaf: it imports no
training package); :func:`export.run_loader.load_run` dispatches on ``kind`` to the package that
trained the run, which returns a :class:`LoadedRun`.
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
    module: torch.nn.Module  # eval mode; for the U-Net the re-parameterised (two-3x3) network
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
