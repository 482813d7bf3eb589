"""SYNTHETIC landslide scenes (labelled synthetic everywhere) for tests, demos and the ablation.

A scene is generated from physics-flavoured rules, not from any real place:

1. **Terrain**: fractal DEM by spectral synthesis (amplitude ~ k^-2.2 on a periodic grid), 10 m pixels,
   scaled so the median slope is U(15, 30) deg, over a base of 200-1500 m; slope from central differences.
2. **Rain**: one storm per scene, intensity P ~ lognormal (median 8 mm/h) and duration D ~ U(6, 72) h.
3. **Land cover** (correlated indices): a smooth vegetation field gives NDVI, lowered on steep and high
   ground; urban patches on gentle low ground raise NDBI and lower NDVI; water in the lowest 2 % of
   the scene raises NDWI; elsewhere NDWI ~ -0.7 NDVI and NDBI ~ -0.5 NDVI plus noise.
4. **Soil moisture** (SMI in [0, 1]): topographic wetness (concavity and gentle slope) plus the storm's
   rain depth P*D through 1 - exp(-P*D/120 mm), plus smooth noise.
5. **Label**: infinite-slope factor of safety with soil depth 1.2 m, unit weight 19 kN/m3, friction
   angle 38 deg, cohesion 5 kPa + 10 kPa * max(NDVI, 0) (roots), pore pressure ratio from SMI::

       FS = c / (gamma z sin(t) cos(t)) + (1 - m gamma_w / gamma) tan(phi) / tan(t)

   multiplied by a smooth log-normal noise field (unmodelled geology); pixels with FS < 1 fail, the
   failed cells run out 2 px (binary dilation) and components smaller than 6 px are dropped. Water
   pixels never fail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from agent.features.lsi import LsiParams
from agent.features.raster_channels import build_stack
from export.raster.terrain import slope_deg
from export.raster.tiles import TileRecord, write_index, write_tile

log = logging.getLogger(__name__)
PIXEL_M = 10.0


@dataclass(frozen=True)
class Scene:
    """One synthetic scene: static channels by name, the storm, the 7-channel stack and the label."""

    static: dict[str, np.ndarray]
    rain_mm_h: float
    rain_h: float
    stack: np.ndarray  # (7, H, W) float32
    label: np.ndarray  # (H, W) uint8


def _fractal(rng: np.random.Generator, h: int, w: int, exponent: float) -> np.ndarray:
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    amp = k**-exponent
    amp[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, size=amp.shape)
    field = np.fft.irfft2(amp * np.exp(1j * phase), s=(h, w))
    field -= field.mean()
    return field / (field.std() + 1e-12)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap")
    return f / (f.std() + 1e-12)


def make_scene(rng: np.random.Generator, size: int = 256, lsi_params: LsiParams | None = None) -> Scene:
    h = w = size
    field = _fractal(rng, h, w, 2.2)
    gy, gx = np.gradient(field, PIXEL_M)
    scale = np.tan(np.radians(rng.uniform(15, 30))) / float(np.median(np.hypot(gx, gy)))
    dem = (rng.uniform(200, 1500) + scale * (field - field.min())).astype(np.float32)
    slope = slope_deg(dem, PIXEL_M)
    p = float(np.exp(rng.normal(np.log(8.0), 0.6)))
    d = float(rng.uniform(6, 72))

    zn = (dem - dem.min()) / (np.ptp(dem) + 1e-9)
    concavity = ndimage.uniform_filter(dem, 15, mode="reflect") - dem
    wet = np.clip(
        0.5 + concavity / (np.std(concavity) * 4 + 1e-9) + 0.3 * (1 - np.clip(slope / 40, 0, 1)), 0, 1
    )
    smi = 0.1 + 0.35 * wet + 0.45 * (1 - np.exp(-p * d / 120.0)) + 0.05 * _smooth_noise(rng, h, w, 6)
    smi = np.clip(smi, 0, 1)

    veg = 0.45 + 0.25 * _smooth_noise(rng, h, w, 10) - 0.25 * zn - 0.2 * np.clip((slope - 30) / 30, 0, 1)
    urban = (_smooth_noise(rng, h, w, 8) > 1.3) & (slope < 12) & (zn < 0.6)
    water = dem <= np.quantile(dem, 0.02)
    ndvi = np.clip(veg + 0.05 * rng.standard_normal((h, w)), -0.2, 0.9)
    ndvi = np.where(urban, rng.uniform(0.0, 0.15, (h, w)), ndvi)
    ndvi = np.where(water, rng.uniform(-0.3, -0.05, (h, w)), ndvi)
    ndwi = np.clip(-0.7 * ndvi + 0.05 * rng.standard_normal((h, w)), -1, 1)
    ndwi = np.where(water, rng.uniform(0.3, 0.6, (h, w)), ndwi)
    ndbi = np.clip(-0.5 * ndvi + 0.05 * rng.standard_normal((h, w)), -1, 1)
    ndbi = np.where(urban, rng.uniform(0.1, 0.4, (h, w)), ndbi)

    t = np.radians(np.clip(slope, 0.5, 89.0))
    gamma, gamma_w, z, phi = 19.0, 9.81, 1.2, np.radians(38.0)
    cohesion = 5.0 + 10.0 * np.clip(ndvi, 0, 1)
    fs = cohesion / (gamma * z * np.sin(t) * np.cos(t)) + (1 - smi * gamma_w / gamma) * np.tan(phi) / np.tan(
        t
    )
    fs = fs * np.exp(0.12 * _smooth_noise(rng, h, w, 4))
    failed = (fs < 1.0) & ~water
    failed = ndimage.binary_dilation(failed, iterations=2) & ~water
    lab, n = ndimage.label(failed)
    if n:
        sizes = ndimage.sum(failed, lab, index=np.arange(1, n + 1))
        failed = np.isin(lab, 1 + np.flatnonzero(sizes >= 6))
    static = {
        "smi": smi.astype(np.float32),
        "ndbi": ndbi.astype(np.float32),
        "ndvi": ndvi.astype(np.float32),
        "ndwi": ndwi.astype(np.float32),
        "slope": slope,
        "dem": dem,
    }
    stack, _ = build_stack(static, p, d, lsi_params)
    return Scene(static=static, rain_mm_h=p, rain_h=d, stack=stack, label=failed.astype(np.uint8))


def write_scenes(out: Path, count: int, seed: int, tile: int = 128, scene_tiles: int = 2) -> list[TileRecord]:
    """Write ``count`` tiles (scenes of ``scene_tiles`` x ``scene_tiles`` tiles) as a tile data dir."""
    rng = np.random.default_rng(seed)
    params = LsiParams()
    records: list[TileRecord] = []
    scene_no = 0
    while len(records) < count:
        scene = make_scene(rng, tile * scene_tiles, params)
        sid = f"s{scene_no:03d}"
        for r in range(scene_tiles):
            for c in range(scene_tiles):
                if len(records) >= count:
                    break
                sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                y = scene.label[sl]
                tid = f"{sid}_r{r}_c{c}"
                write_tile(out / "tiles" / f"{tid}.npz", scene.stack[(slice(None), *sl)], y)
                records.append(
                    TileRecord(
                        tid, f"tiles/{tid}.npz", sid, r, c, scene.rain_mm_h, scene.rain_h, float(y.mean())
                    )
                )
        scene_no += 1
    write_index(
        out,
        {
            "tile_size": tile,
            "synthetic": True,
            "source": f"SYNTHETIC scenes from export.raster.synthetic (seed {seed}); not a real place",
            "pixel_m": PIXEL_M,
            "lsi_params": params.model_dump(),
        },
        records,
    )
    log.info("wrote %d SYNTHETIC tiles from %d scenes to %s", len(records), scene_no, out)
    return records


def write_scene_geotiff(path: Path, size: int, seed: int) -> Scene:
    """One SYNTHETIC scene as a georeferenced GeoTIFF stack (7 channels + mask) on a made-up UTM grid."""
    from rasterio.transform import from_origin

    from export.raster.geotiff import write_stack

    scene = make_scene(np.random.default_rng(seed), size, LsiParams())
    bands = {
        name: scene.stack[i] for i, name in enumerate(("smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi"))
    }
    bands["mask"] = scene.label.astype(np.float32)
    # EPSG:32648 (UTM 48N) at a made-up origin: SYNTHETIC, not a real place.
    write_stack(path, bands, "EPSG:32648", from_origin(500000.0, 3300000.0, PIXEL_M, PIXEL_M))
    return scene
