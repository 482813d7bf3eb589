"""Named input channels of the raster models, and the derived ones, computed in ONE place.

A raster model reads a named list of channels (``channels`` in the tile data dir, the run and the
bundle's model ``meta``), e.g. ``red, green, blue, grvi`` for Bijie orthophotos or the 7-channel LSI
stack ``smi, ndbi, ndvi, ndwi, slope, dem, lsi``. A site raster (or a training image) provides named
layers; every channel is either such a layer or derived from layers by a rule of :data:`DERIVED`
(training import and the gateway call the same :func:`assemble`). The rain-driven ``lsi`` channel is
added by :func:`agent.features.raster_channels.build_channel_stack`, which knows the live rain.

numpy only (gateway side; no torch).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agent.errors import RasterError

LSI_STACK: tuple[str, ...] = ("smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi")
LSI_FACTORS: tuple[str, ...] = LSI_STACK[:6]
RAIN_CHANNELS: frozenset[str] = frozenset({"lsi"})  # recomputed from live rain, never a stored layer
# Channels that scale with illumination (brightness augmentation applies); ratios such as GRVI do not.
REFLECTANCE: frozenset[str] = frozenset({"red", "green", "blue", "nir", "swir1", "swir2", "brightness"})


@dataclass(frozen=True)
class Derived:
    inputs: tuple[str, ...]
    formula: str


DERIVED: dict[str, Derived] = {
    "grvi": Derived(("green", "red"), "(green - red) / (green + red)  (visible-band vegetation index)"),
    "ndvi": Derived(("nir", "red"), "(nir - red) / (nir + red)"),
    "ndwi": Derived(("green", "nir"), "(green - nir) / (green + nir)"),
    "ndbi": Derived(("swir1", "nir"), "(swir1 - nir) / (swir1 + nir)"),
    "brightness": Derived(("red", "green", "blue"), "(red + green + blue) / 3"),
    "slope": Derived(("dem",), "degrees from the DEM, central differences on the pixel size"),
}


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b), NaN where a + b == 0 or an input is NaN (never inf)."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    s = a64 + b64
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.abs(s) > 1e-12, (a64 - b64) / np.where(np.abs(s) > 1e-12, s, 1.0), np.nan)
    return out.astype(np.float32)


def slope_deg(dem: np.ndarray, pixel_m: float = 10.0) -> np.ndarray:
    """Slope in degrees from a DEM in metres on a square grid of ``pixel_m`` metres (central differences)."""
    gy, gx = np.gradient(np.asarray(dem, dtype=np.float64), pixel_m)
    return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)


def _derive(name: str, layers: Mapping[str, np.ndarray], pixel_m: float) -> np.ndarray:
    g = {k: np.asarray(v, dtype=np.float32) for k, v in layers.items()}
    if name == "slope":
        return slope_deg(g["dem"], pixel_m)
    if name == "brightness":
        return ((g["red"] + g["green"] + g["blue"]) / 3.0).astype(np.float32)
    a, b = DERIVED[name].inputs
    return normalized_difference(g[a], g[b])


def missing_layers(available: Collection[str], channels: Sequence[str]) -> dict[str, list[str]]:
    """Channel -> the layers it lacks (empty dict: every channel can be read or derived).

    ``lsi`` needs the six LSI factors (each present or derivable); rain comes at run time.
    """
    have = set(available)
    out: dict[str, list[str]] = {}
    for ch in channels:
        if ch in have:
            continue
        if ch in RAIN_CHANNELS:
            sub = missing_layers(have, LSI_FACTORS)
            if sub:
                out[ch] = sorted({m for v in sub.values() for m in v} | set(sub))
            continue
        rule = DERIVED.get(ch)
        if rule is None:
            out[ch] = [ch]
        else:
            lacking = [i for i in rule.inputs if i not in have]
            if lacking:
                out[ch] = lacking
    return out


def describe_missing(missing: Mapping[str, list[str]], where: str) -> str:
    parts = []
    for ch, lacking in missing.items():
        rule = DERIVED.get(ch)
        how = f"or the layers {rule.inputs} to derive it as {rule.formula}" if rule else "as a layer"
        if ch in RAIN_CHANNELS:
            how = f"which is computed from the layers {list(LSI_FACTORS)} (lacking {lacking})"
        parts.append(f"channel {ch!r} ({how})")
    return f"{where} lacks " + "; ".join(parts)


def assemble(
    layers: Mapping[str, np.ndarray], channels: Sequence[str], *, pixel_m: float = 10.0
) -> np.ndarray:
    """Named 2-D layers -> (C, H, W) float32 stack in the order of ``channels``, deriving what is absent."""
    missing = missing_layers(layers.keys(), [c for c in channels if c not in RAIN_CHANNELS])
    rain = [c for c in channels if c in RAIN_CHANNELS and c not in layers]
    if missing or rain:
        raise RasterError(
            describe_missing(missing, "the raster") if missing else f"rain channels {rain} not computed",
            fix=f"provide the named layers for every model channel {list(channels)}"
            if missing
            else "build the stack with agent.features.raster_channels.build_channel_stack",
        )
    shapes = {k: np.shape(layers[k]) for k in layers}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise RasterError(
            f"raster layers must be 2-D and share one shape, got {shapes}",
            fix="resample every layer onto the same grid",
        )
    h, w = next(iter(shapes.values()))
    stack = np.empty((len(channels), h, w), dtype=np.float32)
    for i, ch in enumerate(channels):
        stack[i] = np.asarray(layers[ch], dtype=np.float32) if ch in layers else _derive(ch, layers, pixel_m)
    return stack
