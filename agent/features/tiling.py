"""Cut a site raster into overlapping tiles and stitch per-tile predictions back without seams (numpy).

The raster (C, H, W) is padded by ``margin`` pixels on every side (reflect), then covered by tiles of
``tile`` pixels whose origins step by ``stride = tile - overlap`` (the last row/column of tiles is
shifted back so it ends exactly at the padded edge; extra padding makes tiny rasters fit). Stitching
accumulates ``weight * prediction`` and ``weight`` per pixel and divides. The weight window is 0 in a
``margin``-wide ring at the tile border (where a network sees zero padding instead of the
neighbouring ground) and ramps linearly to 1 over the next ``ramp`` pixels, so neighbouring tiles
cross-fade instead of meeting at a hard seam. Because of the ``margin`` padding every raster pixel
lies inside some tile's weight>0 region (checked: :class:`TileGrid` refuses a geometry that leaves
holes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from agent.errors import RasterError


@dataclass(frozen=True)
class TileGrid:
    """Geometry of a tiling: raster size, padding, tile size, and the tile origins (padded coords)."""

    height: int
    width: int
    tile: int
    overlap: int
    margin: int
    pad_bottom: int  # extra padding (beyond margin) so the padded raster is at least one tile
    pad_right: int
    origins: tuple[tuple[int, int], ...]  # (row, col) of each tile's top-left in the padded raster

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (
            self.height + 2 * self.margin + self.pad_bottom,
            self.width + 2 * self.margin + self.pad_right,
        )


def _axis_origins(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def make_grid(height: int, width: int, *, tile: int = 128, overlap: int = 32, margin: int = 16) -> TileGrid:
    """Plan the tiles for an ``height`` x ``width`` raster."""
    if height <= 0 or width <= 0:
        raise RasterError(
            f"raster of {height}x{width} pixels has nothing to tile", fix="pass a non-empty raster"
        )
    if tile <= 0 or overlap < 0 or margin < 0 or overlap >= tile:
        raise RasterError(
            f"tiling needs tile > overlap >= 0 and margin >= 0, "
            f"got tile={tile} overlap={overlap} margin={margin}",
            fix="use e.g. tile=128 overlap=32 margin=16",
        )
    if overlap < 2 * margin:
        raise RasterError(
            f"overlap {overlap} < 2*margin {2 * margin}: the zero-weight borders of neighbouring tiles would "
            "leave unpredicted pixels",
            fix="use overlap >= 2*margin",
        )
    ph = height + 2 * margin
    pw = width + 2 * margin
    pad_bottom = max(0, tile - ph)
    pad_right = max(0, tile - pw)
    stride = tile - overlap
    rows = _axis_origins(ph + pad_bottom, tile, stride)
    cols = _axis_origins(pw + pad_right, tile, stride)
    return TileGrid(
        height=height,
        width=width,
        tile=tile,
        overlap=overlap,
        margin=margin,
        pad_bottom=pad_bottom,
        pad_right=pad_right,
        origins=tuple((r, c) for r in rows for c in cols),
    )


def pad_raster(raster: np.ndarray, grid: TileGrid) -> np.ndarray:
    """Reflect-pad a (C, H, W) raster as the grid expects (edge mode where reflect cannot reach)."""
    _check_raster(raster, grid)
    m = grid.margin
    pads = ((0, 0), (m, m + grid.pad_bottom), (m, m + grid.pad_right))
    mode: Literal["reflect", "edge"] = (
        "reflect" if min(grid.height, grid.width) > m + max(grid.pad_bottom, grid.pad_right) else "edge"
    )
    return np.pad(raster, pads, mode=mode)


def cut_tiles(raster: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(C, H, W) -> (N, C, tile, tile) in the order of ``grid.origins``."""
    return tiles_of(pad_raster(raster, grid), grid, 0, len(grid.origins)).astype(raster.dtype, copy=False)


def tiles_of(padded: np.ndarray, grid: TileGrid, start: int, stop: int) -> np.ndarray:
    """Tiles ``start:stop`` (in the order of ``grid.origins``) of a raster padded by :func:`pad_raster`,
    as one (n, C, tile, tile) array: the same values as ``cut_tiles(raster, grid)[start:stop]``, without
    holding every tile at once (the daemon's risk map cuts one batch at a time)."""
    t = grid.tile
    return np.stack([padded[:, r : r + t, c : c + t] for r, c in grid.origins[start:stop]])


def blend_window(tile: int, margin: int, ramp: int) -> np.ndarray:
    """(tile, tile) weights: 0 in the ``margin`` border ring, linear ramp over ``ramp`` px, then 1."""
    idx = np.arange(tile, dtype=np.float64)
    dist = np.minimum(idx, tile - 1 - idx)  # distance to the nearest edge along one axis
    w1 = np.clip((dist - margin + 1) / max(ramp, 1), 0.0, 1.0)
    return np.outer(w1, w1)


def stitch(tiles: np.ndarray, grid: TileGrid) -> np.ndarray:
    """(N, C, tile, tile) per-tile predictions -> (C, H, W) blended raster (cropped to the input)."""
    if tiles.ndim != 4 or tiles.shape[0] != len(grid.origins) or tiles.shape[2:] != (grid.tile, grid.tile):
        raise RasterError(
            f"stitch got tiles of shape {tiles.shape}, "
            f"expected ({len(grid.origins)}, C, {grid.tile}, {grid.tile})",
            fix="stitch the predictions of exactly the tiles cut_tiles() returned for this grid",
        )
    ramp = max(1, grid.overlap // 2 - grid.margin)
    window = blend_window(grid.tile, grid.margin, ramp)
    ph, pw = grid.padded_shape
    acc = np.zeros((tiles.shape[1], ph, pw), dtype=np.float64)
    wsum = np.zeros((ph, pw), dtype=np.float64)
    t = grid.tile
    for (r, c), pred in zip(grid.origins, tiles, strict=True):
        acc[:, r : r + t, c : c + t] += window * pred
        wsum[r : r + t, c : c + t] += window
    m = grid.margin
    core_w = wsum[m : m + grid.height, m : m + grid.width]
    if np.any(core_w <= 0):
        raise RasterError(
            f"tiling leaves {int((core_w <= 0).sum())} pixels without weight",
            fix="increase overlap relative to margin",
        )
    out = acc[:, m : m + grid.height, m : m + grid.width] / core_w
    return out.astype(tiles.dtype, copy=False)


def _check_raster(raster: np.ndarray, grid: TileGrid) -> None:
    if raster.ndim != 3 or raster.shape[1:] != (grid.height, grid.width):
        raise RasterError(
            f"raster shape {raster.shape} does not match the grid "
            f"({grid.height}x{grid.width}, channels first)",
            fix="pass a (C, H, W) array of the size the grid was planned for",
        )
