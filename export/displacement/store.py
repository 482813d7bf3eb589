"""The displacement RUN_DIR on disk.

RUN_DIR/
  run.json        kind "displacement", mode "train"|"finetune", sources, stations, arch, meta, models
                  (name -> {"type": "cnn"|"gbr"|"persistence"|"moving_average"|"linear_trend"|rule,
                  "file"?: ...}),
                  window counts and drop counters, seed, timings
  windows.npz     the fit / cal / test windows (x, y (N, H), station, t, rain, event (N, H)) exactly as
                  trained and evaluated, and the per-step warning-event timeline (tl_t, tl_station, tl_event)
  <model>.pt      state_dict of each CNN (regression head outputs mm)
  gbr.pkl         the gradient-boosting reference (pickle; only load run dirs you made)
  evaluation.json + plot_<station>.png   written by `agent-export evaluate displacement`
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.errors import TrainingError
from export.displacement.dataset import Part
from export.displacement.model import ArchConfig, DisplacementCNN, build
from export.runs import read_run_json

RUN_JSON = "run.json"
WINDOWS = "windows.npz"
PARTS = ("fit", "cal", "test")


def jsonable(obj: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_run_json(run_dir: Path, data: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_JSON).write_text(json.dumps(jsonable(data), indent=2) + "\n")


def read_displacement_run(run_dir: Path) -> dict[str, Any]:
    data = read_run_json(run_dir)
    if data.get("kind") != "displacement":
        raise TrainingError(
            f"{run_dir} is a {data.get('kind')!r} run, not a displacement run",
            fix="pass a RUN_DIR written by `agent-export train displacement` or `finetune`",
        )
    return data


def save_parts(run_dir: Path, parts: dict[str, Part], timeline: dict[str, np.ndarray] | None = None) -> None:
    arrays: dict[str, np.ndarray] = dict(timeline or {})
    for name, part in parts.items():
        arrays.update(part.to_npz(name))
    np.savez_compressed(run_dir / WINDOWS, **arrays)  # type: ignore[arg-type]


def load_timeline(run_dir: Path) -> dict[str, np.ndarray]:
    """Per-step time, station index and warning event of every station (empty for old runs)."""
    with np.load(run_dir / WINDOWS) as data:
        return {k: np.asarray(data[k]) for k in ("tl_t", "tl_station", "tl_event") if k in data}


def load_parts(run_dir: Path) -> dict[str, Part]:
    path = run_dir / WINDOWS
    if not path.is_file():
        raise TrainingError(
            f"{path} missing", fix="re-run `agent-export train displacement` into this RUN_DIR"
        )
    with np.load(path) as data:
        return {p: Part.from_npz(data, p) for p in PARTS}


def save_cnn(run_dir: Path, name: str, model: DisplacementCNN) -> str:
    file = f"{name}.pt"
    torch.save(model.state_dict(), run_dir / file)
    return file


def load_cnn(run_dir: Path, file: str, arch: dict[str, Any]) -> DisplacementCNN:
    path = run_dir / file
    if not path.is_file():
        raise TrainingError(f"model weights {path} missing", fix="re-run the training into this RUN_DIR")
    model = build(ArchConfig(**arch))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model


def save_pickle(run_dir: Path, file: str, obj: Any) -> str:
    (run_dir / file).write_bytes(pickle.dumps(obj))
    return file


def load_pickle(run_dir: Path, file: str) -> Any:
    path = run_dir / file
    if not path.is_file():
        raise TrainingError(f"{path} missing", fix="re-run the training into this RUN_DIR")
    return pickle.loads(path.read_bytes())
