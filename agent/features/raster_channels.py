"""The 7-channel stack the U-Net reads (seed 004), built and refreshed with numpy only.

Channel order (``CHANNELS``): SMI, NDBI, NDVI, NDWI, slope (deg), DEM (m), LSI. The first six are
static over a rain event (or slowly varying); the LSI channel is recomputed from live rain intensity
P (mm/h) and duration D (h) with :func:`refresh_lsi`, so the gateway can re-run the network as the
storm goes on. Normalisation statistics (mean/std per channel) come from the training split and
travel in the bundle's ``meta``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from agent.errors import RasterError
from agent.features.lsi import LsiParams, LsiResult, compute_lsi

CHANNELS: tuple[str, ...] = ("smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi")
STATIC_CHANNELS: tuple[str, ...] = CHANNELS[:6]
LSI_INDEX = CHANNELS.index("lsi")


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), NaN where a + b == 0 or an input is NaN (never inf)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    s = a64 + b64
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.abs(s) > 1e-12, (a64 - b64) / np.where(np.abs(s) > 1e-12, s, 1.0), np.nan)
    return out.astype(np.float32)


def _factors(stack: np.ndarray) -> dict[str, np.ndarray]:
    return {name: stack[i] for i, name in enumerate(STATIC_CHANNELS)}


def build_stack(
    static: Mapping[str, np.ndarray],
    p_mm_h: float,
    d_h: float,
    params: LsiParams | None = None,
) -> tuple[np.ndarray, LsiResult]:
    """Static channels by name (smi, ndbi, ndvi, ndwi, slope, dem) + rain -> (7, H, W) float32."""
    missing = [c for c in STATIC_CHANNELS if c not in static]
    if missing:
        raise RasterError(
            f"raster stack lacks channels {missing}", fix=f"provide all of {list(STATIC_CHANNELS)}"
        )
    shapes = {c: np.shape(static[c]) for c in STATIC_CHANNELS}
    if len(set(shapes.values())) != 1 or len(shapes["dem"]) != 2:
        raise RasterError(
            f"raster channels must be 2-D and share one shape, got {shapes}",
            fix="resample every channel onto the same grid",
        )
    h, w = shapes["dem"]
    stack = np.empty((len(CHANNELS), h, w), dtype=np.float32)
    for i, c in enumerate(STATIC_CHANNELS):
        stack[i] = np.asarray(static[c], dtype=np.float32)
    return refresh_lsi(stack, p_mm_h, d_h, params)


def refresh_lsi(
    stack: np.ndarray, p_mm_h: float, d_h: float, params: LsiParams | None = None
) -> tuple[np.ndarray, LsiResult]:
    """Return a copy of a (7, H, W) stack whose LSI channel is recomputed for rain P (mm/h), D (h)."""
    check_stack(stack)
    result = compute_lsi(_factors(stack), p_mm_h, d_h, params)
    out = stack.astype(np.float32, copy=True)
    out[LSI_INDEX] = result.lsi
    return out, result


def check_stack(stack: np.ndarray) -> None:
    if stack.ndim != 3 or stack.shape[0] != len(CHANNELS):
        raise RasterError(
            f"raster stack has shape {stack.shape}, expected ({len(CHANNELS)}, H, W) "
            f"in order {list(CHANNELS)}",
            fix="build it with agent.features.raster_channels.build_stack",
        )


def normalise(stack: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, int]:
    """(x - mean) / std per channel; NaN -> 0 (the training mean). Returns (array, NaN values replaced)."""
    check_stack(stack)
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    if m.shape[0] != len(CHANNELS) or s.shape[0] != len(CHANNELS) or np.any(s <= 0):
        raise RasterError(
            f"normalisation needs {len(CHANNELS)} means and positive stds, got {len(mean)} and {list(std)}",
            fix="use the normalisation stored with the trained model (meta.normalisation)",
        )
    x = (stack.astype(np.float32) - m) / s
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad:
        x = np.where(bad, np.float32(0.0), x)
    return x.astype(np.float32), n_bad
