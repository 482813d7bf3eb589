"""Three Gorges (Baishuihe / Bazimen) monthly GPS displacement + daily rain -> monthly site series.

Reads the ``derived/`` tables of ../shared/data/three-gorges-baishuihe-bazimen (see its SOURCES.md):
``gps_monthly_cumulative_displacement.csv`` (month, site, point, dX_mm, dY_mm, ...) and
``rain_daily.csv`` (date, site, gauge, rain_mm). Step ``P1M``, time = first day of the month, UTC.
Mapping (Chinese survey convention, X north, Y east): ``disp_n_mm = dX``, ``disp_e_mm = dY``;
no vertical (NaN). ``rain_mm`` = sum of the month's daily rain at the site's gauge; a month with no rain
rows is NaN (counted ``rain_missing_steps``). Unsorted rows are sorted and exact duplicates merged
(counted); conflicting duplicates and unknown points are errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agent.errors import SiteSeriesError
from agent.features.site_series import SiteSeries, regularize
from export.data.common import checked_series, parse_float, read_csv_table, sort_and_merge, step_rain

REQUIRED_DISP = ("month", "site", "point", "dX_mm", "dY_mm")
REQUIRED_RAIN = ("date", "site", "rain_mm")


def _table(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    return read_csv_table(
        path, required, fix="use the derived/ tables of three-gorges-baishuihe-bazimen (see its SOURCES.md)"
    )


def _month(text: str, where: str) -> float:
    try:
        return datetime.strptime(text.strip()[:7], "%Y-%m").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise SiteSeriesError(f"{where}: {text!r} is not YYYY-MM", fix="repair that row") from exc


def import_three_gorges(displacement_csv: Path, rain_csv: Path, point: str) -> SiteSeries:
    head, rows = _table(Path(displacement_csv), REQUIRED_DISP)
    j = {c: head.index(c) for c in REQUIRED_DISP}
    sel = [r for r in rows if len(r) == len(head) and r[j["point"]] == point]
    if not sel:
        points = sorted({r[j["point"]] for r in rows if len(r) == len(head)})
        raise SiteSeriesError(f"point {point!r} not in {displacement_csv}", fix=f"choose one of {points}")
    site = sel[0][j["site"]]
    repairs: dict[str, int] = {}
    t = np.asarray([_month(r[j["month"]], str(displacement_csv)) for r in sel])
    v = np.asarray(
        [[parse_float(r[j["dY_mm"]], point), parse_float(r[j["dX_mm"]], point)] for r in sel],
        dtype=np.float64,
    )
    t, v = sort_and_merge(t, v, repairs, f"{displacement_csv} point {point}")
    grid, cols = regularize(t, {"disp_e_mm": v[:, 0], "disp_n_mm": v[:, 1]}, "P1M", repairs)
    cols["disp_u_mm"] = np.full(grid.size, np.nan)
    rhead, rrows = _table(Path(rain_csv), REQUIRED_RAIN)
    rj = {c: rhead.index(c) for c in REQUIRED_RAIN}
    sums = np.zeros(grid.size)
    counts = np.zeros(grid.size, dtype=int)
    for i, r in enumerate(rrows, start=2):
        if len(r) != len(rhead) or r[rj["site"]] != site:
            continue
        k = int(np.searchsorted(grid, _month(r[rj["date"]], f"{rain_csv}:{i}")))
        if k < grid.size and grid[k] == _month(r[rj["date"]], str(rain_csv)):
            val = parse_float(r[rj["rain_mm"]], f"{rain_csv}:{i}")
            if np.isfinite(val):
                sums[k] += val
                counts[k] += 1
    cols["rain_mm"] = step_rain(sums, counts, repairs)
    meta = {
        "site": site,
        "station": point,
        "step": "P1M",
        "source": f"Three Gorges {Path(displacement_csv).name} + {Path(rain_csv).name} (dX->north, dY->east)",
        "synthetic": "false",
    }
    return checked_series(grid, cols, repairs, meta)
