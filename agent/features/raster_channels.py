"""The 7-channel LSI stack (seed 004), any named channel stack, built and refreshed with numpy only.

Channel order (``CHANNELS``): SMI, NDBI, NDVI, NDWI, slope (deg), DEM (m), LSI. The first six are
static over a rain event (or slowly varying); the LSI channel is recomputed from live rain intensity
P (mm/h) and duration D (h) with :func:`refresh_lsi`, so the gateway can re-run the network as the
storm goes on. Normalisation statistics (mean/std per channel) come from the training split and
travel in the bundle's ``meta``. Models trained on other layers (e.g. ``red, green, blue, grvi``)
name their channels in ``meta['channels']``; :func:`build_channel_stack` assembles any such list
(derived channels: :mod:`agent.features.channels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from agent.errors import RasterError
from agent.features.channels import LSI_STACK, RAIN_CHANNELS, assemble, normalized_difference
from agent.features.lsi import LsiParams, LsiResult, compute_lsi

CHANNELS: tuple[str, ...] = LSI_STACK  # the default stack; a model's meta may name another list
STATIC_CHANNELS: tuple[str, ...] = CHANNELS[:6]
LSI_INDEX = CHANNELS.index("lsi")


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


def model_channels(meta: Mapping[str, object]) -> list[str]:
    """The channel list a model reads (``meta['channels']``); none given: the 7-channel LSI stack."""
    names = meta.get("channels")
    if isinstance(names, list | tuple) and names:
        return [str(n) for n in names]
    return list(CHANNELS)


def build_channel_stack(
    layers: Mapping[str, np.ndarray],
    channels: Sequence[str],
    p_mm_h: float,
    d_h: float,
    params: LsiParams | None = None,
    *,
    pixel_m: float = 10.0,
) -> tuple[np.ndarray, LsiResult | None]:
    """Named layers + rain -> (C, H, W) stack in ``channels`` order; ``lsi`` recomputed for (P, D)."""
    if list(channels) == list(CHANNELS) and all(c in layers for c in STATIC_CHANNELS):
        return build_stack(layers, p_mm_h, d_h, params)
    lsi: LsiResult | None = None
    extra = dict(layers)
    if any(c in RAIN_CHANNELS for c in channels):
        factors = assemble(layers, STATIC_CHANNELS, pixel_m=pixel_m)
        lsi = compute_lsi(_factors(factors), p_mm_h, d_h, params)
        extra["lsi"] = lsi.lsi
    return assemble(extra, channels, pixel_m=pixel_m), lsi


def check_stack(stack: np.ndarray) -> None:
    if stack.ndim != 3 or stack.shape[0] != len(CHANNELS):
        raise RasterError(
            f"raster stack has shape {stack.shape}, expected ({len(CHANNELS)}, H, W) "
            f"in order {list(CHANNELS)}",
            fix="build it with agent.features.raster_channels.build_stack",
        )


def normalise(stack: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, int]:
    """(x - mean) / std per channel; NaN -> 0 (the training mean). Returns (array, NaN values replaced)."""
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    if stack.ndim != 3 or m.shape[0] != stack.shape[0] or s.shape[0] != stack.shape[0] or np.any(s <= 0):
        raise RasterError(
            f"normalisation needs {stack.shape[0] if stack.ndim == 3 else '?'} means and positive stds "
            f"for a stack of shape {stack.shape}, got {len(mean)} and {list(std)}",
            fix="use the normalisation stored with the trained model (meta.normalisation)",
        )
    x = (stack.astype(np.float32) - m) / s
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if n_bad:
        x = np.where(bad, np.float32(0.0), x)
    return x.astype(np.float32), n_bad


__all__ = [
    "CHANNELS",
    "LSI_INDEX",
    "STATIC_CHANNELS",
    "build_channel_stack",
    "build_stack",
    "model_channels",
    "normalise",
    "normalized_difference",
    "refresh_lsi",
]
