"""The spatial risk source on the gateway: the U-Net over the site raster, LSI refreshed from live rain.

The site's named layers are read once from an ``.npz``; the model's ``meta['channels']`` says which
channels it reads (none: the 7-channel LSI stack SMI, NDBI, NDVI, NDWI, slope, DEM, LSI). Each run
checks the layers against that list (a missing channel is logged by name and counted, never guessed),
derives what is derivable (agent.features.channels), recomputes an LSI channel for the current rain
event (intensity P mm/h, duration D h; seed 004 eq. 5), normalises with the statistics in the
bundle, cuts overlapping tiles, runs the ``unet`` model through the model manager (onnxruntime or
TensorRT) and stitches the probabilities back without seams (agent.features.tiling). The summary
(fraction of the site above the model's threshold, peak probability) is what the warning engine
grades and what `riskmap` publishes.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import LewsError, RasterError
from agent.features.channels import describe_missing, missing_layers
from agent.features.lsi import LsiParams
from agent.features.raster_channels import build_channel_stack, model_channels, normalise
from agent.features.tiling import make_grid, pad_raster, stitch, tiles_of
from agent.inference.heap import release_freed_memory
from agent.inference.manager import ModelManager
from agent.warning.inputs import SpatialInput

log = logging.getLogger(__name__)

MODEL = "unet"
BATCH = 1  # tiles per model run: the activations of one tile at the peak, not 8 (bench/bench_memory.py)


def load_site_raster(path: Path, channels: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Every 2-D float layer of a site ``.npz`` by name (scalar ``pixel_m`` kept as a 0-d array).

    With ``channels``, the layers must provide (or derive) each of them: the error names what is missing.
    """
    try:
        with np.load(path) as data:
            layers = {k: np.asarray(data[k], dtype=np.float32) for k in data.files}
    except (OSError, ValueError) as exc:
        raise RasterError(
            f"site raster {path} cannot be read: {exc}", fix="write it with numpy.savez"
        ) from exc
    if not any(v.ndim == 2 for v in layers.values()):
        raise RasterError(
            f"site raster {path} has no 2-D layers (has {sorted(layers)})",
            fix="save the named layers (e.g. red, green, blue or smi, ndbi, ndvi, ndwi, slope, dem) "
            "as 2-D arrays of one shape (numpy.savez)",
        )
    if channels is not None:
        check_site_channels(layers, channels, str(path))
    return layers


def check_site_channels(layers: Mapping[str, np.ndarray], channels: Sequence[str], where: str) -> None:
    """RasterError naming every model channel the site's layers can neither provide nor derive."""
    missing = missing_layers(_raster_layers(layers).keys(), channels)
    if missing:
        raise RasterError(
            describe_missing(missing, f"site raster {where}") + f" (model channels {list(channels)}, "
            f"site layers {sorted(_raster_layers(layers))})",
            fix="add the missing layers to the site raster or install a bundle trained on the layers "
            "the site has",
        )


def _raster_layers(layers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in layers.items() if np.ndim(v) == 2}


@dataclass(frozen=True)
class RiskMapResult:
    probability: np.ndarray  # (H, W) float32
    spatial: SpatialInput
    summary: dict[str, Any]


class RiskMapper:
    """Runs the U-Net over the site raster for a given rain state; never raises (counts why not)."""

    def __init__(self, static: dict[str, np.ndarray], models: ModelManager) -> None:
        self.static = _raster_layers(static)
        pixel = static.get("pixel_m")
        self.pixel_m = float(pixel) if pixel is not None and np.ndim(pixel) == 0 else 10.0
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
        channels = model_channels(meta)
        try:
            check_site_channels(self.static, channels, "(daemon.site_raster)")
        except RasterError as exc:
            if str(exc) != self.last_reason:
                log.error("risk map impossible: %s; fix: %s", exc, exc.fix)
            self._skip(str(exc), "skipped_missing_channel")
            return None
        try:
            params = LsiParams.model_validate(meta["lsi_params"]) if "lsi" in channels else None
            stack, lsi = build_channel_stack(self.static, channels, p_mm_h, d_h, params, pixel_m=self.pixel_m)
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
            padded = pad_raster(x, grid)
        except (LewsError, KeyError, TypeError, ValueError) as exc:
            self._skip(f"site raster / model meta unusable: {exc}", "skipped_bad_input")
            return None
        # only what the model runs need stays alive through them: the padded raster, one batch of
        # tiles and the predictions (the peak of the daemon's RSS is here: docs/performance.md)
        valid = np.isfinite(stack).all(axis=0)
        del stack, x
        n_tiles = len(grid.origins)
        preds = []
        for i in range(0, n_tiles, BATCH):
            out = self.models.run(MODEL, {entry.inputs[0].name: tiles_of(padded, grid, i, i + BATCH)})
            if out is None:
                self._skip(f"model run failed ({self.models.mode})", "skipped_model_error")
                return None
            preds.append(out[entry.outputs[0].name])
        del padded
        prob = stitch(np.concatenate(preds).astype(np.float32), grid)[0]
        del preds
        release_freed_memory()
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
            "tiles": n_tiles,
            "rain_mm_h": p_mm_h,
            "rain_duration_h": d_h,
            "channels": channels,
        }
        if lsi is not None:
            summary["lsi_mean"] = float(np.nanmean(lsi.lsi))
            summary["lsi_rainfall_multiplier"] = float(lsi.rainfall_multiplier)
        self.counters["maps"] += 1
        self.last_reason = ""
        return RiskMapResult(prob, spatial, summary)
