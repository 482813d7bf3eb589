"""Lamosano (Italy) point P5: 11-day cumulative displacement + hourly rain -> 11-day site series.

Reads ``H_lamo.csv`` (date, p5 = cumulative displacement in mm, every 11 days) and ``rain_hourly.csv``
(``dd/mm/YYYY HH:MM``, mm/h) from ../shared/data/lamosano-italy (see its SOURCES.md). Step ``P11D``.
The direction of P5's displacement is not published, so it goes to ``disp_along_mm`` and the
e/n/u columns are NaN. ``rain_mm`` of a step is the rain of the hours in (previous step, this step];
a step without any hourly record is NaN (counted ``rain_missing_steps``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agent.errors import SiteSeriesError
from agent.features.site_series import SiteSeries, regularize
from export.data.common import checked_series, parse_float, read_csv_table, sort_and_merge, step_rain


def _rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    return read_csv_table(
        path, required, fix="use H_lamo.csv and rain_hourly.csv of lamosano-italy (see its SOURCES.md)"
    )


def _time(text: str, fmt: str, where: str) -> float:
    try:
        return datetime.strptime(text.strip(), fmt).replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise SiteSeriesError(f"{where}: {text!r} does not match {fmt}", fix="repair that row") from exc


def import_lamosano(displacement_csv: Path, rain_csv: Path) -> SiteSeries:
    head, rows = _rows(Path(displacement_csv), ("date", "p5"))
    jd, jp = head.index("date"), head.index("p5")
    repairs: dict[str, int] = {}
    t = np.asarray([_time(r[jd], "%Y-%m-%d", f"{displacement_csv}:{i + 2}") for i, r in enumerate(rows)])
    v = np.asarray([[parse_float(r[jp], f"{displacement_csv}:{i + 2}")] for i, r in enumerate(rows)])
    t, v = sort_and_merge(t, v, repairs, str(displacement_csv))
    grid, cols = regularize(t, {"disp_along_mm": v[:, 0]}, "P11D", repairs)
    rhead, rrows = _rows(Path(rain_csv), ("date", "rain"))
    rd, rr = rhead.index("date"), rhead.index("rain")
    rt = np.asarray([_time(r[rd], "%d/%m/%Y %H:%M", f"{rain_csv}:{i + 2}") for i, r in enumerate(rrows)])
    rv = np.asarray([parse_float(r[rr], f"{rain_csv}:{i + 2}") for i, r in enumerate(rrows)])
    # step k collects the hours in (grid[k-1], grid[k]]
    k = np.searchsorted(grid, rt, side="left")
    ok = (k > 0) & (k < grid.size) & np.isfinite(rv)
    sums = np.bincount(k[ok], weights=rv[ok], minlength=grid.size)
    counts = np.bincount(k[ok], minlength=grid.size)
    cols["rain_mm"] = step_rain(sums, counts, repairs)
    for c in ("disp_e_mm", "disp_n_mm", "disp_u_mm"):
        cols[c] = np.full(grid.size, np.nan)
    meta = {
        "site": "lamosano",
        "station": "P5",
        "step": "P11D",
        "source": f"Nava et al. 2023 sample data {Path(displacement_csv).name} + {Path(rain_csv).name}",
        "synthetic": "false",
    }
    return checked_series(grid, cols, repairs, meta)
