"""UNAVCO/PBO daily GNSS csv + NOAA GHCN-Daily rain (+ optional pressure-logger groundwater) -> site series.

Documented repairs (each counted in ``SiteSeries.repairs`` and written to the CSV header):
- ``unsorted_rows``: rows out of date order are sorted; ``duplicates_dropped``: identical rows merged
  (duplicates that disagree are an error);
- ``gap_steps_filled``: missing days become NaN rows;
- ``low_quality_epochs``: days whose North or East standard deviation exceeds ``max_std_mm`` get NaN
  positions (the first row of every PBO file is a 0/0/0 offset epoch with a large sigma);
- ``position_unit_m_to_mm``: position columns declared in metres are converted to mm;
- ``rain_missing_steps``: GNSS days without a rain record (or GHCN -9999) have NaN rain;
- ``invalid_values``: values outside their physical range (e.g. negative rain) become NaN.
Errors: no ``Date`` header, a missing North/East/Vertical column, an unknown unit, a non-numeric
cell, rain in inches above 15 in/day (it is probably mm: pass ``rain_units='mm'``).
"""

from __future__ import annotations

import csv
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from agent.errors import SiteSeriesError
from agent.features.site_series import SiteSeries, regularize
from export.data.common import checked_series, day_index, parse_float, read_lines, sort_and_merge, split_cells

log = logging.getLogger(__name__)

_POS_COL = re.compile(r"^(North|East|Vertical)\s*\((\w+)\)$", re.IGNORECASE)
_STD_COL = re.compile(r"^(North|East|Vertical)\s+Std\.?\s*Deviation\s*\((\w+)\)$", re.IGNORECASE)
UNIT_TO_MM: dict[str, float] = {"mm": 1.0, "m": 1000.0, "cm": 10.0}
RAIN_TO_MM: dict[str, float] = {"in": 25.4, "mm": 1.0}
MAX_PLAUSIBLE_RAIN_IN = 15.0  # a day of rain above 15 inches (381 mm) in GHCN PRCP means wrong units
GHCN_MISSING = -9999.0


def _parse_date(text: str, where: str) -> float:
    s = text.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%m/%d/%y %H:%M", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M"):
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise SiteSeriesError(f"{where}: {text!r} is not a date", fix="dates must be YYYY-MM-DD or YYYYMMDD")


def read_pbo_csv(
    path: Path, max_std_mm: float = 5.0
) -> tuple[dict[str, str], np.ndarray, np.ndarray, dict[str, int]]:
    """Parse a PBO station csv: (header metadata, day times, (N, 3) e/n/u mm, repairs)."""
    lines = read_lines(path)
    meta: dict[str, str] = {}
    header_at = -1
    for i, line in enumerate(lines):
        if line.startswith("Date,"):
            header_at = i
            break
        key, sep, value = line.partition(",")
        if sep:
            meta[key.strip()] = value.strip()
    if header_at < 0:
        raise SiteSeriesError(
            f"{path} has no 'Date, North (mm), ...' header row: not a UNAVCO/PBO position csv",
            fix="download the station's .csv from the UNAVCO/EarthScope GNSS time-series products",
        )
    cols = [c for c in split_cells(lines[header_at], ",") if c]
    pos: dict[str, tuple[int, float]] = {}
    std: dict[str, int] = {}
    repairs: dict[str, int] = {}
    for j, c in enumerate(cols):
        m, s = _POS_COL.match(c), _STD_COL.match(c)
        for match, target in ((m, "pos"), (s, "std")):
            if match is None:
                continue
            comp, unit = match.group(1).lower(), match.group(2).lower()
            if unit not in UNIT_TO_MM:
                raise SiteSeriesError(
                    f"{path}: column {c!r} is in {unit!r}", fix=f"convert it to one of {sorted(UNIT_TO_MM)}"
                )
            if target == "pos":
                pos[comp] = (j, UNIT_TO_MM[unit])
                if unit != "mm":
                    repairs["position_unit_m_to_mm" if unit == "m" else "position_unit_cm_to_mm"] = 1
            elif unit == "mm":
                std[comp] = j
    missing = [c for c in ("north", "east", "vertical") if c not in pos]
    if missing:
        raise SiteSeriesError(
            f"{path}: position column(s) {missing} missing from header {cols}",
            fix="the PBO csv must have Date, North (mm), East (mm), Vertical (mm)",
        )
    times, rows = [], []
    for i, line in enumerate(lines[header_at + 1 :], start=header_at + 2):
        if not line.strip():
            continue
        cells = split_cells(line, ",")
        where = f"{path}:{i}"
        if len(cells) <= max(j for j, _ in pos.values()):
            raise SiteSeriesError(f"{where} has too few cells", fix="repair or delete that row")
        times.append(_parse_date(cells[0], where))
        e = parse_float(cells[pos["east"][0]], where) * pos["east"][1]
        n = parse_float(cells[pos["north"][0]], where) * pos["north"][1]
        u = parse_float(cells[pos["vertical"][0]], where) * pos["vertical"][1]
        sig = [
            parse_float(cells[std[c]], where) for c in ("north", "east") if c in std and std[c] < len(cells)
        ]
        if sig and max(sig) > max_std_mm:
            e = n = u = float("nan")
            repairs["low_quality_epochs"] = repairs.get("low_quality_epochs", 0) + 1
        rows.append((e, n, u))
    if not rows:
        raise SiteSeriesError(f"{path} has no data rows", fix="check the file is complete")
    t, v = sort_and_merge(np.asarray(times), np.asarray(rows, dtype=np.float64), repairs, str(path))
    return meta, t, v, repairs


def _delimited(lines: list[str]) -> list[list[str]]:
    """Tab-separated (the GHCN text export), quoted CSV (the NOAA CDO csv, whose NAME holds commas), or
    whitespace-separated rows."""
    if "\t" in lines[0]:
        return [[c.strip().strip('"') for c in ln.split("\t")] for ln in lines]
    if "," in lines[0]:
        return [[c.strip() for c in row] for row in csv.reader(lines)]
    return [split_cells(ln) for ln in lines]


def read_ghcn_daily(path: Path, units: str = "in") -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """NOAA GHCN-Daily export with DATE and PRCP columns -> (day times, rain mm, repairs)."""
    if units not in RAIN_TO_MM:
        raise SiteSeriesError(f"rain units {units!r} unknown", fix=f"use one of {sorted(RAIN_TO_MM)}")
    lines = [ln for ln in read_lines(path) if ln.strip()]
    if not lines:
        raise SiteSeriesError(f"{path} is empty", fix="export DATE and PRCP from NOAA GHCN-Daily")
    table = _delimited(lines)
    head = [c.upper() for c in table[0]]
    if "DATE" not in head or "PRCP" not in head:
        raise SiteSeriesError(
            f"{path}: header {head} lacks DATE and/or PRCP", fix="export DATE and PRCP from NOAA GHCN-Daily"
        )
    jd, jp = head.index("DATE"), head.index("PRCP")
    times, rain = [], []
    for i, cells in enumerate(table[1:], start=2):
        where = f"{path}:{i}"
        if len(cells) <= max(jd, jp):
            raise SiteSeriesError(f"{where} has too few cells", fix="repair or delete that row")
        times.append(_parse_date(cells[jd], where))
        value = parse_float(cells[jp], where)
        rain.append(np.nan if value == GHCN_MISSING else value)
    repairs: dict[str, int] = {}
    r = np.asarray(rain, dtype=np.float64)
    if units == "in" and np.nanmax(np.append(r, 0.0)) > MAX_PLAUSIBLE_RAIN_IN:
        raise SiteSeriesError(
            f"{path}: PRCP up to {np.nanmax(r):.1f} per day is implausible in inches",
            fix="this export looks metric: pass --rain-units mm",
        )
    t, v = sort_and_merge(np.asarray(times), r[:, None], repairs, str(path))
    return t, v[:, 0] * RAIN_TO_MM[units], repairs


def read_logger_daily(path: Path, column: str = "Depth(m)") -> tuple[np.ndarray, np.ndarray]:
    """HOBO-style pressure-logger csv ('Date Time', ..., 'Depth(m)') -> daily means (day times, metres)."""
    lines = [ln for ln in read_lines(path) if ln.strip()]
    head = [c.strip() for c in lines[0].split(",")] if lines else []
    if "Date Time" not in head or column not in head:
        raise SiteSeriesError(
            f"{path}: header {head} lacks 'Date Time' and/or {column!r}",
            fix="export the logger's compensated water depth in metres",
        )
    jd, jv = head.index("Date Time"), head.index(column)
    days: dict[float, list[float]] = {}
    for i, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) <= max(jd, jv):
            continue
        t = _parse_date(cells[jd], f"{path}:{i}")
        v = parse_float(cells[jv], f"{path}:{i}")
        if np.isfinite(v):
            days.setdefault(t - t % 86400.0, []).append(v)
    keys = sorted(days)
    return np.asarray(keys, dtype=np.float64), np.asarray([np.mean(days[k]) for k in keys])


def _on_grid(grid: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    out = np.full(grid.size, np.nan)
    idx = day_index(t, grid)
    ok = (idx >= 0) & (t - grid[np.clip(idx, 0, None)] < 86400.0)
    out[idx[ok]] = v[ok]
    return out


def import_pbo(
    gnss_csv: Path,
    rain_txt: Path,
    *,
    groundwater_csv: Path | None = None,
    site: str = "salmon-falls",
    rain_units: str = "in",
    max_std_mm: float = 5.0,
) -> SiteSeries:
    """Join one PBO station with daily rain (and groundwater) on the station's daily grid."""
    meta_src, t, enu, repairs = read_pbo_csv(Path(gnss_csv), max_std_mm)
    grid, cols = regularize(
        t, {"disp_e_mm": enu[:, 0], "disp_n_mm": enu[:, 1], "disp_u_mm": enu[:, 2]}, "P1D", repairs
    )
    rt, rain, rrep = read_ghcn_daily(Path(rain_txt), rain_units)
    for k, v in rrep.items():
        repairs[f"rain_{k}"] = v
    cols["rain_mm"] = _on_grid(grid, rt, rain)
    n_missing = int(np.isnan(cols["rain_mm"]).sum())
    if n_missing:
        repairs["rain_missing_steps"] = n_missing
    if groundwater_csv is not None:
        gt, gv = read_logger_daily(Path(groundwater_csv))
        cols["groundwater_m"] = _on_grid(grid, gt, gv)
    station = meta_src.get("4-character ID", Path(gnss_csv).name.split(".")[0]).strip()
    meta = {
        "site": site,
        "station": station,
        "step": "P1D",
        "source": f"UNAVCO/PBO {Path(gnss_csv).name} ({meta_src.get('Reference Frame', '?')}); "
        f"NOAA GHCN-Daily {Path(rain_txt).name} (PRCP {rain_units} -> mm)"
        + (f"; groundwater {Path(groundwater_csv).name} daily mean Depth(m)" if groundwater_csv else ""),
        "synthetic": "false",
    }
    series = checked_series(grid, cols, repairs, meta)
    log.info("imported %s: %d days, repairs %s", station, len(series), repairs)
    return series
