"""The spatial risk source on the gateway: the U-Net over the site raster, LSI refreshed from live rain.

The site's six static channels (SMI, NDBI, NDVI, NDWI, slope, DEM) are read once from an ``.npz``;
each run recomputes the LSI channel for the current rain event (intensity P mm/h, duration D h;
seed 004 eq. 5), normalises with the statistics in the bundle, cuts overlapping tiles, runs the
``unet`` model through the model manager (onnxruntime or TensorRT) and stitches the probabilities
back without seams (agent.features.tiling). The summary (fraction of the site above the model's
threshold, peak probability) is what the warning engine grades and what `riskmap` publishes.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import LewsError, RasterError
from agent.features.lsi import LsiParams
from agent.features.raster_channels import STATIC_CHANNELS, build_stack, normalise
from agent.features.tiling import cut_tiles, make_grid, stitch
from agent.inference.manager import ModelManager
from agent.warning.inputs import SpatialInput

log = logging.getLogger(__name__)

MODEL = "unet"
BATCH = 8


def load_site_raster(path: Path) -> dict[str, np.ndarray]:
    """The static channels from an ``.npz`` with one 2-D float array per name in STATIC_CHANNELS."""
    try:
        with np.load(path) as data:
            static = {c: np.asarray(data[c], dtype=np.float32) for c in STATIC_CHANNELS if c in data}
    except (OSError, ValueError) as exc:
        raise RasterError(
            f"site raster {path} cannot be read: {exc}", fix="write it with numpy.savez"
        ) from exc
    missing = [c for c in STATIC_CHANNELS if c not in static]
    if missing:
        raise RasterError(
            f"site raster {path} lacks channels {missing}",
            fix=f"save all of {list(STATIC_CHANNELS)} as 2-D arrays of one shape (numpy.savez)",
        )
    return static


@dataclass(frozen=True)
class RiskMapResult:
    probability: np.ndarray  # (H, W) float32
    spatial: SpatialInput
    summary: dict[str, Any]


class RiskMapper:
    """Runs the U-Net over the site raster for a given rain state; never raises (counts why not)."""

    def __init__(self, static: dict[str, np.ndarray], models: ModelManager) -> None:
        self.static = static
        self.models = models
        self.counters: Counter[str] = Counter()
        self.last_reason = ""

    def _skip(self, reason: str, key: str) -> None:
        self.counters[key] += 1
        if reason != self.last_reason:
            log.info("risk map skipped: %s", reason)
        self.last_reason = reason

    def run(self, p_mm_h: float, d_h: float, now: float) -> RiskMapResult | None:
        entry = self.models.model_entry(MODEL)
        if entry is None:
            self._skip(f"no {MODEL!r} model loaded (mode {self.models.mode})", "skipped_no_model")
            return None
        meta = entry.meta
        try:
            params = LsiParams.model_validate(meta["lsi_params"])
            stack, lsi = build_stack(self.static, p_mm_h, d_h, params)
            norm = meta["normalisation"]
            x, n_nan = normalise(stack, norm["mean"], norm["std"])
            stitching = meta.get("stitching", {})
            grid = make_grid(
                x.shape[1],
                x.shape[2],
                tile=int(meta["tile_size"]),
                overlap=int(stitching.get("overlap", 32)),
                margin=int(stitching.get("margin", 16)),
            )
            tiles = cut_tiles(x, grid)
        except (LewsError, KeyError, TypeError, ValueError) as exc:
            self._skip(f"site raster / model meta unusable: {exc}", "skipped_bad_input")
            return None
        preds = []
        for i in range(0, len(tiles), BATCH):
            out = self.models.run(MODEL, {entry.inputs[0].name: tiles[i : i + BATCH]})
            if out is None:
                self._skip(f"model run failed ({self.models.mode})", "skipped_model_error")
                return None
            preds.append(out[entry.outputs[0].name])
        prob = stitch(np.concatenate(preds).astype(np.float32), grid)[0]
        valid = np.isfinite(stack).all(axis=0)
        threshold = float(meta["threshold"])
        n_valid = int(valid.sum())
        above = float((prob[valid] >= threshold).mean()) if n_valid else 0.0
        peak = float(prob[valid].max()) if n_valid else 0.0
        version = str(self.models.status().get("bundle_id") or "unknown")
        spatial = SpatialInput(
            t=now,
            area_fraction_above=above,
            probability_threshold=threshold,
            max_probability=peak,
            model_name=MODEL,
            model_version=version,
            completeness=n_valid / valid.size,
        )
        summary = {
            "area_fraction_above": above,
            "probability_threshold": threshold,
            "max_probability": peak,
            "mean_probability": float(prob[valid].mean()) if n_valid else 0.0,
            "pixels": int(valid.size),
            "valid_pixels": n_valid,
            "nan_inputs_replaced": n_nan,
            "tiles": len(tiles),
            "rain_mm_h": p_mm_h,
            "rain_duration_h": d_h,
            "lsi_mean": float(np.nanmean(lsi.lsi)),
            "lsi_rainfall_multiplier": float(lsi.rainfall_multiplier),
        }
        self.counters["maps"] += 1
        self.last_reason = ""
        return RiskMapResult(prob, spatial, summary)
