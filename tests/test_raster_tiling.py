"""Tiling and seamless stitching (agent.features.tiling), numpy only."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from agent.errors import RasterError
from agent.features.tiling import blend_window, cut_tiles, make_grid, pad_raster, stitch, tiles_of


@pytest.mark.parametrize("h,w", [(128, 128), (300, 260), (50, 70), (129, 400), (1, 1)])
def test_stitch_of_cut_tiles_is_the_raster(h: int, w: int) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    raster = rng.standard_normal((3, h, w)).astype(np.float32)
    grid = make_grid(h, w, tile=64, overlap=32, margin=8)
    tiles = cut_tiles(raster, grid)
    assert tiles.shape == (len(grid.origins), 3, 64, 64)
    np.testing.assert_allclose(stitch(tiles, grid), raster, atol=1e-6)


def test_local_operator_per_tile_equals_full_raster_operator() -> None:
    """A 5x5 box filter per tile (zero padded at tile edges!) stitches to the full-raster filter exactly:
    the tile-edge artefacts sit in the zero-weight margin ring."""
    rng = np.random.default_rng(1)
    raster = rng.standard_normal((1, 333, 210))
    grid = make_grid(333, 210, tile=64, overlap=24, margin=4)
    tiles = cut_tiles(raster, grid)
    filtered = np.stack([ndimage.uniform_filter(t, size=(1, 5, 5), mode="constant") for t in tiles])
    expect = ndimage.uniform_filter(raster, size=(1, 5, 5), mode="mirror")  # np.pad reflect == mirror
    np.testing.assert_allclose(stitch(filtered, grid), expect, atol=1e-9)


def test_a_too_small_margin_shows_the_seams() -> None:
    """Control for the test above: with margin 0 the zero padding of the tiles leaks into the result."""
    rng = np.random.default_rng(1)
    raster = rng.standard_normal((1, 200, 200))
    grid = make_grid(200, 200, tile=64, overlap=0, margin=0)
    filtered = np.stack(
        [ndimage.uniform_filter(t, size=(1, 5, 5), mode="constant") for t in cut_tiles(raster, grid)]
    )
    expect = ndimage.uniform_filter(raster, size=(1, 5, 5), mode="mirror")
    assert np.abs(stitch(filtered, grid) - expect).max() > 0.1


def test_blend_window_shape() -> None:
    w = blend_window(16, 2, 4)
    assert w.shape == (16, 16)
    assert np.all(w[:2] == 0) and np.all(w[:, -2:] == 0)
    assert w[8, 8] == 1.0
    assert np.all(np.diff(w[8, :8]) >= 0)


def test_geometry_errors() -> None:
    with pytest.raises(RasterError):
        make_grid(100, 100, tile=64, overlap=8, margin=8)  # overlap < 2*margin leaves holes
    with pytest.raises(RasterError):
        make_grid(0, 10)
    with pytest.raises(RasterError):
        make_grid(100, 100, tile=64, overlap=64)
    grid = make_grid(100, 100, tile=64, overlap=32, margin=8)
    with pytest.raises(RasterError):
        cut_tiles(np.zeros((1, 99, 100)), grid)
    with pytest.raises(RasterError):
        stitch(np.zeros((1, 1, 64, 64)), grid)


def test_tile_origins_step_by_stride() -> None:
    grid = make_grid(500, 500, tile=128, overlap=32, margin=16)
    rows = sorted({r for r, _ in grid.origins})
    assert rows[0] == 0 and rows[-1] == 500 + 32 - 128
    assert all(b - a <= 96 for a, b in itertools.pairwise(rows))


def test_tiles_cut_a_batch_at_a_time_equal_the_whole_cut() -> None:
    rng = np.random.default_rng(3)
    raster = rng.random((7, 200, 250), dtype=np.float32)
    grid = make_grid(200, 250, tile=128, overlap=32, margin=16)
    whole = cut_tiles(raster, grid)
    padded = pad_raster(raster, grid)
    n = len(grid.origins)
    for batch in (1, 2, 4):
        parts = np.concatenate([tiles_of(padded, grid, i, i + batch) for i in range(0, n, batch)])
        assert parts.dtype == whole.dtype
        np.testing.assert_array_equal(parts, whole)
