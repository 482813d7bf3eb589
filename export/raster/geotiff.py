"""GeoTIFF stacks (rasterio), keeping georeferencing.

A stack is one multi-band GeoTIFF whose band descriptions name the channels (``smi``, ``ndbi``,
``ndvi``, ``ndwi``, ``slope``, ``dem``, optional ``lsi``, optional ``mask``). Without descriptions,
6, 7 or 8 bands are read in that order. A mask can also come as a separate single-band file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import RasterError
from agent.features.raster_channels import CHANNELS, STATIC_CHANNELS

log = logging.getLogger(__name__)
ORDER = (*CHANNELS, "mask")


@dataclass
class GeoStack:
    static: dict[str, np.ndarray]  # the six static channels, float32 (H, W)
    lsi: np.ndarray | None  # stored LSI band, if any
    mask: np.ndarray | None  # uint8 (H, W), if any
    profile: dict[str, Any]  # rasterio profile (crs, transform, width, height, ...)

    @property
    def georeferenced(self) -> bool:
        return self.profile.get("crs") is not None


def _read_bands(path: Path, fix: str) -> tuple[np.ndarray, list[str], dict[str, Any], float | None]:
    """(float32 bands, lower-case band names, rasterio profile, nodata) of a GeoTIFF."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as ds:
            data = ds.read().astype(np.float32)
            names = [(d or "").strip().lower() for d in ds.descriptions]
            return data, names, dict(ds.profile), ds.nodata
    except RasterioIOError as exc:
        raise RasterError(f"cannot open GeoTIFF {path}: {exc}", fix=fix) from exc


def read_stack(path: Path, mask_path: Path | None = None) -> GeoStack:
    data, names, profile, nodata = _read_bands(path, "pass a readable GeoTIFF stack")
    if nodata is not None:
        data = np.where(data == nodata, np.nan, data)
    if not all(names):
        if data.shape[0] not in (6, 7, 8):
            raise RasterError(
                f"{path} has {data.shape[0]} unnamed bands",
                fix=f"name the bands (descriptions) or write 6-8 bands in the order {list(ORDER)}",
            )
        names = list(ORDER[: data.shape[0]])
        log.warning("%s has no band descriptions; assuming band order %s", path, names)
    bands = dict(zip(names, data, strict=True))
    missing = [c for c in STATIC_CHANNELS if c not in bands]
    if missing:
        raise RasterError(
            f"{path} lacks bands {missing} (has {names})", fix=f"include all of {list(STATIC_CHANNELS)}"
        )
    mask = bands.get("mask")
    if mask_path is not None:
        import rasterio

        with rasterio.open(mask_path) as ms:
            mask = ms.read(1)
    if mask is not None:
        if mask.shape != data.shape[1:]:
            raise RasterError(
                f"mask shape {mask.shape} differs from {path} {data.shape[1:]}",
                fix="use a mask on the same grid",
            )
        mask = (np.nan_to_num(mask) > 0).astype(np.uint8)
    return GeoStack({c: bands[c] for c in STATIC_CHANNELS}, bands.get("lsi"), mask, profile)


def read_layers(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every band of a GeoTIFF by its description (lower case; nodata -> NaN) + the rasterio profile.

    For stacks of any named channels (e.g. ``red, green, blue`` orthophotos); bands must be named.
    """
    data, names, profile, nodata = _read_bands(path, "pass a readable GeoTIFF")
    if not all(names) or len(set(names)) != len(names):
        raise RasterError(
            f"{path}: bands must carry unique names (descriptions), got {names}",
            fix="set band descriptions (e.g. red, green, blue, mask) when writing the GeoTIFF",
        )
    if nodata is not None:
        data = np.where(data == nodata, np.nan, data)
    return dict(zip(names, data, strict=True)), profile


def write_stack(path: Path, bands: dict[str, np.ndarray], crs: str, transform: Any) -> None:
    """Write named float32 bands (order of ``ORDER`` for known names) as one GeoTIFF stack."""
    import rasterio

    names = [n for n in ORDER if n in bands] + [n for n in bands if n not in ORDER]
    h, w = bands[names[0]].shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=h,
        width=w,
        count=len(names),
        dtype="float32",
        crs=crs,
        transform=transform,
        compress="deflate",
    ) as ds:
        for i, n in enumerate(names, start=1):
            ds.write(bands[n].astype(np.float32), i)
            ds.set_band_description(i, n)


def write_probability(path: Path, prob: np.ndarray, profile: dict[str, Any]) -> None:
    """Single-band float32 GeoTIFF on the input's grid (same crs and transform)."""
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=prob.shape[0],
        width=prob.shape[1],
        count=1,
        dtype="float32",
        crs=profile.get("crs"),
        transform=profile.get("transform"),
        compress="deflate",
    ) as ds:
        ds.write(prob.astype(np.float32), 1)
        ds.set_band_description(1, "landslide_probability")


def geotiff_to_site_raster(path: Path, out: Path) -> dict[str, Any]:
    """A GeoTIFF with named bands -> the gateway's site raster ``.npz`` (one 2-D float32 array per band
    name, ``mask`` left out, ``pixel_m`` from the transform); the gateway reads only this ``.npz``."""
    layers, profile = read_layers(path)
    layers.pop("mask", None)
    transform = profile.get("transform")
    pixel_m = float(abs(transform.a)) if transform is not None else 10.0
    arrays = {k: v.astype(np.float32) for k, v in layers.items()}
    arrays["pixel_m"] = np.asarray(pixel_m, dtype=np.float32)
    np.savez_compressed(out, allow_pickle=False, **arrays)
    return {"layers": sorted(layers), "shape": list(next(iter(layers.values())).shape), "pixel_m": pixel_m}
