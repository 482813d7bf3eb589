"""`predict unet`: probability maps for .h5 patches or GeoTIFF stacks, tiled and stitched without seams.

Every input becomes a (7, H, W) stack (LSI recomputed for the given storm), normalised with the run's
training statistics, cut into overlapping 128 px tiles (agent.features.tiling), run through the
RE-PARAMETERISED enhanced network (the module that ships), stitched with cross-fade weights, and
written as ``<stem>_probability.tif`` (on the input's grid, when the input was georeferenced) or
``<stem>_probability.npy``, plus ``<stem>_preview.png`` (risk over hillshade) and one
``predictions.json`` summary.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agent.errors import RasterError
from agent.features.channels import RAIN_CHANNELS
from agent.features.lsi import LsiParams
from agent.features.raster_channels import CHANNELS, LSI_INDEX, build_channel_stack, build_stack, normalise
from agent.features.tiling import cut_tiles, make_grid, stitch
from export.raster.geotiff import read_layers, read_stack, write_probability
from export.raster.l4s import l4s_static_channels, read_l4s_patch
from export.raster.preview import write_preview
from export.unet.run import export_module, open_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    rain_mm_h: float | None = None  # None: the reference storm P0 (or a GeoTIFF's stored LSI band)
    rain_h: float | None = None  # None: D0
    smi: float = 0.5  # constant SMI for inputs without soil moisture (Landslide4Sense)
    slope_scale: float = 1.0
    dem_scale: float = 1.0
    overlap: int = 32
    margin: int = 16
    batch: int = 8
    pixel_m: float = 10.0


@torch.no_grad()
def predict_raster(
    module: torch.nn.Module,
    stack: np.ndarray,
    mean: list[float],
    std: list[float],
    tile: int = 128,
    overlap: int = 32,
    margin: int = 16,
    batch: int = 8,
    channels: list[str] | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """(C, H, W) raw stack -> (H, W) probability via overlapping tiles; ``module`` outputs probabilities."""
    x, replaced = normalise(stack, mean, std)
    grid = make_grid(x.shape[1], x.shape[2], tile=tile, overlap=overlap, margin=margin)
    tiles = cut_tiles(x, grid)
    module.eval()
    preds = []
    for i in range(0, tiles.shape[0], batch):
        preds.append(module(torch.from_numpy(np.ascontiguousarray(tiles[i : i + batch]))).numpy())
    prob = stitch(np.concatenate(preds).astype(np.float32), grid)[0]
    names = channels or list(CHANNELS)
    static = [i for i, c in enumerate(names) if c not in RAIN_CHANNELS]
    nodata = ~np.isfinite(stack[static]).any(axis=0)  # no static channel known: no prediction
    prob[nodata] = np.nan
    return prob, {
        "tiles": len(grid.origins),
        "nonfinite_inputs_replaced": replaced,
        "nodata_pixels": int(nodata.sum()),
    }


def _load_named(
    path: Path, channels: list[str], p: float, d: float, params: LsiParams, pixel_m: float
) -> tuple[np.ndarray, dict[str, Any] | None, dict[str, Any]]:
    """A stack of a model's named channels from a GeoTIFF with named bands (or a site ``.npz``)."""
    if path.suffix.lower() == ".npz":
        from agent.riskmap import load_site_raster

        layers, profile = load_site_raster(path, channels), None
    elif path.suffix.lower() in (".tif", ".tiff"):
        layers, profile = read_layers(path)
    else:
        raise RasterError(
            f"{path}: a model of channels {channels} reads GeoTIFFs with named bands or site .npz files",
            fix="pass a .tif whose band descriptions name the layers (e.g. red, green, blue)",
        )
    layers = {k: v for k, v in layers.items() if np.ndim(v) == 2 and k != "mask"}
    stack, lsi = build_channel_stack(layers, channels, p, d, params, pixel_m=pixel_m)
    info: dict[str, Any] = {"format": "named layers", "channels": channels}
    if lsi is not None:
        info.update({"rain_mm_h": p, "rain_h": d, "lsi_nan": lsi.nan_pixels})
    georef = profile is not None and profile.get("crs") is not None
    return stack, (profile if georef else None), info


def _load_input(
    path: Path, opts: PredictOptions, params: LsiParams, channels: list[str] | None = None
) -> tuple[np.ndarray, dict[str, Any] | None, dict[str, Any]]:
    """-> raw stack, rasterio profile (None if not georeferenced), info."""
    p = opts.rain_mm_h if opts.rain_mm_h is not None else params.p0_mm_h
    d = opts.rain_h if opts.rain_h is not None else params.d0_h
    if channels is not None and channels != list(CHANNELS):
        return _load_named(path, channels, p, d, params, opts.pixel_m)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        static = l4s_static_channels(read_l4s_patch(path), opts.smi, opts.slope_scale, opts.dem_scale)
        stack, lsi = build_stack(static, p, d, params)
        return (
            stack,
            None,
            {"format": "landslide4sense-h5", "rain_mm_h": p, "rain_h": d, "lsi_nan": lsi.nan_pixels},
        )
    if suffix in (".tif", ".tiff"):
        geo = read_stack(path)
        stack, lsi = build_stack(geo.static, p, d, params)
        info: dict[str, Any] = {
            "format": "geotiff-stack",
            "rain_mm_h": p,
            "rain_h": d,
            "lsi_nan": lsi.nan_pixels,
        }
        if opts.rain_mm_h is None and opts.rain_h is None and geo.lsi is not None:
            stack[LSI_INDEX] = geo.lsi
            info.update({"rain_mm_h": None, "rain_h": None, "lsi": "stored band"})
        return stack, (geo.profile if geo.georeferenced else None), info
    raise RasterError(
        f"{path}: unknown input type {suffix!r}",
        fix="pass Landslide4Sense .h5 patches or GeoTIFF stacks (.tif)",
    )


def predict_inputs(
    run_dir: Path, inputs: list[Path], out: Path, opts: PredictOptions | None = None
) -> dict[str, Any]:
    opts = opts or PredictOptions()
    run = open_run(run_dir)
    params = LsiParams.model_validate(run.doc["lsi_params"]) if run.doc.get("lsi_params") else LsiParams()
    module = export_module(run)
    threshold = float(run.doc["thresholds"][run.shipped_variant])
    tile = int(run.doc["config"]["tile"])
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for path in inputs:
        if not path.is_file():
            raise RasterError(f"input {path} does not exist", fix="pass existing .h5 or .tif files")
        stack, profile, info = _load_input(path, opts, params, run.channels)
        prob, counts = predict_raster(
            module, stack, run.mean, run.std, tile, opts.overlap, opts.margin, opts.batch, run.channels
        )
        if profile is not None:
            prob_path = out / f"{path.stem}_probability.tif"
            write_probability(prob_path, prob, profile)
        else:
            prob_path = out / f"{path.stem}_probability.npy"
            np.save(prob_path, prob.astype(np.float32))
        png = out / f"{path.stem}_preview.png"
        title = f"{path.name}: P(landslide), {run.shipped_variant} U-Net (run {run_dir.name})"
        if run.doc.get("synthetic", False):
            title += "\nmodel trained on SYNTHETIC data"
        dem = stack[run.channels.index("dem")] if "dem" in run.channels else np.zeros_like(prob)
        write_preview(png, prob, dem, title, threshold, opts.pixel_m)
        results.append(
            {
                "input": str(path),
                "probability": str(prob_path),
                "preview": str(png),
                "shape": list(prob.shape),
                "georeferenced": profile is not None,
                "fraction_above_threshold": round(float((prob >= threshold).mean()), 6),
                **info,
                **counts,
            }
        )
        log.info("%s -> %s (%d tiles)", path, prob_path, counts["tiles"])
    summary = {
        "run": str(run_dir),
        "threshold": threshold,
        "trained_on_synthetic": bool(run.doc.get("synthetic", False)),
        "options": asdict(opts),
        "outputs": results,
    }
    (out / "predictions.json").write_text(json.dumps(summary, indent=1))
    return summary
