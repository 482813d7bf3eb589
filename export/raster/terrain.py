"""Terrain derivatives from a DEM: slope (degrees) and hillshade (for previews)."""

from __future__ import annotations

import numpy as np

from agent.features.channels import slope_deg  # one place for training and the gateway

__all__ = ["hillshade", "slope_deg"]


def hillshade(
    dem: np.ndarray, pixel_m: float = 10.0, azimuth_deg: float = 315.0, altitude_deg: float = 45.0
) -> np.ndarray:
    """Lambertian hillshade in [0, 1] (sun from the north-west, 45 degrees up by default); NaN -> 0.5."""
    z = np.nan_to_num(
        np.asarray(dem, dtype=np.float64), nan=float(np.nanmean(dem)) if np.isfinite(dem).any() else 0.0
    )
    gy, gx = np.gradient(z, pixel_m)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az = np.radians(360.0 - azimuth_deg + 90.0)
    alt = np.radians(altitude_deg)
    shade = np.sin(alt) * np.cos(slope) + np.cos(alt) * np.sin(slope) * np.cos(az - aspect)
    return np.clip(shade, 0.0, 1.0).astype(np.float32)
