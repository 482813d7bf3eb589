"""On-disk tile format read by training and evaluation (``agent-export data synth scenes`` writes it).

A DATA_DIR holds ``tiles.json`` and ``tiles/<id>.npz``. ``tiles.json``::

    {"format": "lews-raster-tiles", "version": 1, "channels": ["smi", ..., "lsi"], "tile_size": 128,
     "synthetic": true, "source": "...", "lsi_params": {...},
     "tiles": [{"id": "s003_r1_c0", "file": "tiles/s003_r1_c0.npz", "scene": "s003", "row": 1, "col": 0,
                "rain_mm_h": 12.0, "rain_h": 30.0, "positive_fraction": 0.07}, ...]}

``channels`` names the tile channels in order (any list: the 7-channel LSI stack, ``red, green, blue,
grvi`` for Bijie, ...). Each ``.npz`` holds ``x`` (float32, (C, T, T), channel order of
``channels``) and ``y`` (uint8, (T, T), 1 = landslide / unstable). ``scene`` + ``row``/``col`` (tile
position in its scene) drive the spatially blocked split (for imported images: scene = image).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import RasterError
from agent.features.raster_channels import CHANNELS

FORMAT = "lews-raster-tiles"
VERSION = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileRecord:
    id: str
    file: str
    scene: str
    row: int
    col: int
    rain_mm_h: float
    rain_h: float
    positive_fraction: float


@dataclass
class TileSet:
    root: Path
    meta: dict[str, Any]
    records: list[TileRecord]

    @property
    def channels(self) -> list[str]:
        return [str(c) for c in self.meta["channels"]]

    def load(self, ids: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stack tiles (all, or ``ids`` in that order) -> x (N, C, T, T) float32, y (N, T, T) uint8."""
        by_id = {r.id: r for r in self.records}
        wanted = ids if ids is not None else [r.id for r in self.records]
        xs, ys = [], []
        for tid in wanted:
            if tid not in by_id:
                raise RasterError(
                    f"tile {tid!r} is not in {self.root}/tiles.json",
                    fix="use the data dir the run was trained on",
                )
            x, y = read_tile(self.root / by_id[tid].file, int(self.meta["tile_size"]), len(self.channels))
            xs.append(x)
            ys.append(y)
        t = int(self.meta["tile_size"])
        if not xs:
            return np.zeros((0, len(self.channels), t, t), np.float32), np.zeros((0, t, t), np.uint8)
        return np.stack(xs), np.stack(ys)


def write_tile(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x.astype(np.float32), y=y.astype(np.uint8))


def read_tile(path: Path, tile_size: int, n_channels: int = len(CHANNELS)) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise RasterError(f"tile file {path} is missing", fix="regenerate the data dir or restore the file")
    try:
        with np.load(path) as z:
            x = np.asarray(z["x"], dtype=np.float32)
            y = np.asarray(z["y"], dtype=np.uint8)
    except (OSError, KeyError, ValueError) as exc:
        raise RasterError(f"tile file {path} is unreadable: {exc}", fix="regenerate the data dir") from exc
    if x.shape != (n_channels, tile_size, tile_size) or y.shape != (tile_size, tile_size):
        raise RasterError(
            f"tile {path} has x{x.shape} y{y.shape}, expected x({n_channels},{tile_size},{tile_size})",
            fix="regenerate the data dir with this version of agent-export",
        )
    return x, y


def write_index(
    root: Path, meta: dict[str, Any], records: list[TileRecord], channels: list[str] | None = None
) -> Path:
    doc = {"format": FORMAT, "version": VERSION, "channels": list(channels or CHANNELS), **meta}
    doc["tiles"] = [asdict(r) for r in records]
    path = root / "tiles.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def open_tileset(root: Path) -> TileSet:
    path = Path(root) / "tiles.json"
    if not path.is_file():
        raise RasterError(
            f"{path} not found: {root} is not a tile data dir",
            fix="create one with `agent-export data synth scenes --out DIR` (or tile your rasters)",
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RasterError(f"{path} is not valid JSON: {exc}", fix="regenerate the data dir") from exc
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise RasterError(
            f"{path} has format {doc.get('format')!r} v{doc.get('version')}, expected {FORMAT!r} v{VERSION}",
            fix="regenerate the data dir with this version of agent-export",
        )
    names = doc.get("channels")
    if not isinstance(names, list) or not names or not all(isinstance(c, str) and c for c in names):
        raise RasterError(
            f"{path} has no channel list (channels: {names!r})",
            fix="name the tile channels in order in tiles.json 'channels' (e.g. the LSI stack "
            f"{list(CHANNELS)} or red, green, blue, grvi)",
        )
    if len(set(names)) != len(names):
        raise RasterError(f"{path} repeats a channel name: {names}", fix="name every channel once")
    try:
        records = [TileRecord(**r) for r in doc.pop("tiles")]
    except (TypeError, KeyError) as exc:
        raise RasterError(f"{path} has a malformed tile entry: {exc}", fix="regenerate the data dir") from exc
    if not records:
        raise RasterError(f"{path} lists no tiles", fix="generate at least a few tiles")
    return TileSet(root=Path(root), meta=doc, records=records)
