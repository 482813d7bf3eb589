"""Bijie landslide dataset (Ji et al. 2020) PNG pairs: RGB image + RGB mask, resized to tiles.

Masks are RGB with (255, 255, 0) = landslide and (0, 0, 0) = background; any pixel with red > 127 and
green > 127 counts as landslide. Images are resized (bilinear) and masks (nearest) to ``size``.
The data set has no NIR, SWIR or DEM in this copy, so it cannot fill the 7-channel LSI stack: the
U-Net reads a named channel list instead (default ``red, green, blue, grvi``; derived channels come
from :mod:`agent.features.channels`, the same code the gateway runs). ``agent-export data import
bijie DIR --out TILES`` resizes each image to ``size`` px, cuts it into ``tile`` px tiles (one scene
per image, so folds split by image) and writes the tile format (export/raster/tiles.py) with the raw
channels; the per-channel normalisation is fitted later, on the training images of each fold only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.errors import RasterError
from agent.features.channels import assemble, missing_layers
from export.raster.tiles import TileRecord, write_index, write_tile

DEFAULT_CHANNELS: tuple[str, ...] = ("red", "green", "blue", "grvi")
RGB = ("red", "green", "blue")


def read_bijie_pair(image: Path, mask: Path, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """-> rgb (3, size, size) float32 in [0, 1], mask (size, size) uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as im:
            rgb = np.asarray(
                im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32
            )
        with Image.open(mask) as mk:
            m = np.asarray(mk.convert("RGB").resize((size, size), Image.Resampling.NEAREST))
    except (OSError, UnidentifiedImageError) as exc:
        raise RasterError(
            f"cannot read Bijie pair {image} / {mask}: {exc}", fix="pass PNG image and mask files"
        ) from exc
    label = ((m[..., 0] > 127) & (m[..., 1] > 127)).astype(np.uint8)
    return np.moveaxis(rgb / 255.0, -1, 0), label


def read_bijie_dir(root: Path, size: int = 128) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Pairs ``root/images/<id>.png`` + ``root/masks/<id>.png`` -> ids, rgb (N,3,S,S), masks (N,S,S)."""
    images = sorted((Path(root) / "images").glob("*.png"))
    if not images:
        raise RasterError(f"no images in {root}/images", fix="point at a Bijie dir with images/ and masks/")
    ids, rgbs, masks = [], [], []
    for img in images:
        mask = Path(root) / "masks" / img.name
        if not mask.is_file():
            raise RasterError(
                f"mask {mask} for {img} is missing", fix="every image needs a mask of the same name"
            )
        rgb, m = read_bijie_pair(img, mask, size)
        ids.append(img.stem)
        rgbs.append(rgb)
        masks.append(m)
    return ids, np.stack(rgbs), np.stack(masks)


def bijie_stack(rgb: np.ndarray, channels: tuple[str, ...] | list[str]) -> np.ndarray:
    """rgb (3, H, W) in [0, 1] -> (C, H, W) in ``channels`` order (derived channels computed)."""
    missing = missing_layers(RGB, channels)
    if missing:
        raise RasterError(
            f"Bijie images have only {list(RGB)}: cannot make channels {sorted(missing)}",
            fix="choose channels from red, green, blue and what derives from them (grvi, brightness)",
        )
    return assemble(dict(zip(RGB, rgb, strict=True)), list(channels))


def bijie_tiles(
    root: Path, size: int = 128, tile: int = 128, channels: tuple[str, ...] | list[str] = DEFAULT_CHANNELS
) -> tuple[list[TileRecord], np.ndarray, np.ndarray]:
    """Image/mask dir -> tile records (scene = image id), x (N, C, tile, tile), y (N, tile, tile)."""
    if size % tile:
        raise RasterError(
            f"--size {size} is not a multiple of --tile {tile}", fix="use e.g. 128/128, 256/128"
        )
    ids, rgbs, masks = read_bijie_dir(root, size)
    records: list[TileRecord] = []
    xs, ys = [], []
    n = size // tile
    for iid, rgb, mask in zip(ids, rgbs, masks, strict=True):
        stack = bijie_stack(rgb, channels)
        for r in range(n):
            for c in range(n):
                sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                y = mask[sl]
                tid = f"{iid}_r{r}_c{c}"
                records.append(TileRecord(tid, f"tiles/{tid}.npz", iid, r, c, 0.0, 0.0, float(y.mean())))
                xs.append(stack[(slice(None), *sl)])
                ys.append(y)
    return records, np.stack(xs).astype(np.float32), np.stack(ys).astype(np.uint8)


def import_bijie(
    root: Path,
    out: Path,
    size: int = 128,
    tile: int = 128,
    channels: tuple[str, ...] | list[str] = DEFAULT_CHANNELS,
) -> dict[str, float]:
    """Write the tile data dir of a Bijie image/mask dir; returns counts."""
    records, x, y = bijie_tiles(root, size, tile, channels)
    for rec, xi, yi in zip(records, x, y, strict=True):
        write_tile(Path(out) / rec.file, xi, yi)
    write_index(
        Path(out),
        {
            "tile_size": tile,
            "synthetic": False,
            "source": f"Bijie image/mask PNGs (Ji et al. 2020): {Path(root).resolve()}",
            "lsi_params": {},
            "import": {
                "kind": "bijie",
                "size": size,
                "tile": tile,
                "mask_rule": "red > 127 and green > 127 (yellow 255,255,0) = landslide",
                "resize": "image bilinear, mask nearest",
                "normalisation": "none here: fitted per fold on the training images (train unet)",
            },
        },
        records,
        list(channels),
    )
    images = len({r.scene for r in records})
    return {"images": images, "tiles": len(records), "positive_fraction": round(float(y.mean()), 6)}
