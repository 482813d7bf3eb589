"""Landslide4Sense (Ghorbanzadeh et al. 2022) ``.h5`` patches -> the 6 static channels of the stack.

Each file holds ``img``: (128, 128, 14) float, bands 1-12 = Sentinel-2 B1..B12 (scaled per band as
distributed), band 13 = ALOS PALSAR slope, band 14 = ALOS PALSAR DEM (both scaled as distributed).
Channels: NDVI = (B8 - B4)/(B8 + B4), NDWI = (B3 - B8)/(B3 + B8), NDBI = (B11 - B8)/(B11 + B8), computed
on the distributed (per-band scaled) values, so they are monotone proxies of the textbook indices,
not calibrated ones. Slope and DEM are multiplied by ``slope_scale`` / ``dem_scale`` (default 1: the
distributed scaled units). Landslide4Sense has no soil moisture: the SMI channel holds the constant
``smi`` (default 0.5, "unknown, mid-range") unless the caller provides a field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.errors import RasterError
from agent.features.raster_channels import normalized_difference

# 0-based indices into the 14 bands
B3, B4, B8, B11 = 2, 3, 7, 10
SLOPE, DEM = 12, 13


def read_l4s_patch(path: Path) -> np.ndarray:
    """The raw (14, H, W) float32 band stack of one patch."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "img" not in f:
                raise RasterError(
                    f"{path} has no 'img' dataset (keys: {list(f.keys())})",
                    fix="pass a Landslide4Sense image_N.h5",
                )
            img = np.asarray(f["img"][()], dtype=np.float32)
    except OSError as exc:
        raise RasterError(
            f"{path} is not a readable HDF5 file: {exc}", fix="pass a Landslide4Sense image_N.h5"
        ) from exc
    if img.ndim != 3 or img.shape[2] != 14:
        raise RasterError(
            f"{path} 'img' has shape {img.shape}, expected (H, W, 14)", fix="pass a Landslide4Sense patch"
        )
    return np.moveaxis(img, -1, 0)


def l4s_static_channels(
    bands: np.ndarray, smi: float = 0.5, slope_scale: float = 1.0, dem_scale: float = 1.0
) -> dict[str, np.ndarray]:
    b = bands
    return {
        "smi": np.full(b.shape[1:], smi, dtype=np.float32),
        "ndbi": normalized_difference(b[B11], b[B8]),
        "ndvi": normalized_difference(b[B8], b[B4]),
        "ndwi": normalized_difference(b[B3], b[B8]),
        "slope": (b[SLOPE] * slope_scale).astype(np.float32),
        "dem": (b[DEM] * dem_scale).astype(np.float32),
    }
