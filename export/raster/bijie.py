"""Bijie landslide dataset (Ji et al. 2020) PNG pairs: RGB image + RGB mask, resized to tiles.

Masks are RGB with (255, 255, 0) = landslide and (0, 0, 0) = background; any pixel with red > 127 and
green > 127 counts as landslide. Images are resized (bilinear) and masks (nearest) to ``size``.
The data set has no NIR, SWIR or DEM in this copy, so it cannot fill the 7-channel stack; it serves
loader and metric checks (see docs/riskmap.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.errors import RasterError


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
