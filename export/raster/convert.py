"""Cut labelled GeoTIFF stacks (6-7 channels + mask) into the on-disk tile format for training.

Non-overlapping ``tile`` px tiles on a regular grid (the ragged right/bottom edge is dropped and
counted); each input file is one ``scene`` (its tiles are neighbours: the blocked split keeps them
together, or buffers them when there are fewer than 3 files). Tiles with any non-finite static value
are skipped and counted. The LSI channel is recomputed for the given storm (or the stored band is
kept when no storm is given).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from agent.errors import RasterError
from agent.features.lsi import LsiParams
from agent.features.raster_channels import LSI_INDEX, build_stack
from export.raster.geotiff import read_stack
from export.raster.tiles import TileRecord, write_index, write_tile

log = logging.getLogger(__name__)


def tiles_from_geotiffs(
    stacks: list[Path],
    out: Path,
    *,
    rain_mm_h: float | None = None,
    rain_h: float | None = None,
    tile: int = 128,
    params: LsiParams | None = None,
) -> dict[str, int]:
    params = params or LsiParams()
    records: list[TileRecord] = []
    counts = {"tiles": 0, "skipped_nonfinite": 0, "edge_pixels_dropped": 0}
    for n, path in enumerate(stacks):
        geo = read_stack(path)
        if geo.mask is None:
            raise RasterError(f"{path} has no mask band", fix="add a band named 'mask' (1 = landslide)")
        p = rain_mm_h if rain_mm_h is not None else params.p0_mm_h
        d = rain_h if rain_h is not None else params.d0_h
        stack, _ = build_stack(geo.static, p, d, params)
        if rain_mm_h is None and rain_h is None and geo.lsi is not None:
            stack[LSI_INDEX] = geo.lsi
        h, w = geo.mask.shape
        rows, cols = h // tile, w // tile
        if rows == 0 or cols == 0:
            raise RasterError(
                f"{path} ({h}x{w}) is smaller than one {tile} px tile", fix="use a larger raster"
            )
        counts["edge_pixels_dropped"] += h * w - rows * cols * tile * tile
        scene = f"f{n:03d}_{path.stem}"
        for r in range(rows):
            for c in range(cols):
                sl = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
                x = stack[(slice(None), *sl)]
                if not np.isfinite(x).all():
                    counts["skipped_nonfinite"] += 1
                    continue
                y = geo.mask[sl]
                tid = f"{scene}_r{r}_c{c}"
                write_tile(out / "tiles" / f"{tid}.npz", x, y)
                records.append(TileRecord(tid, f"tiles/{tid}.npz", scene, r, c, p, d, float(y.mean())))
    if not records:
        raise RasterError("no complete finite tiles in the given stacks", fix="check nodata and raster sizes")
    write_index(
        out,
        {
            "tile_size": tile,
            "synthetic": False,
            "source": "GeoTIFF stacks: " + ", ".join(str(s) for s in stacks),
            "lsi_params": params.model_dump(),
        },
        records,
    )
    counts["tiles"] = len(records)
    log.info("wrote %d tiles from %d stacks to %s (%s)", len(records), len(stacks), out, counts)
    return counts
