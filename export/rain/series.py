"""Rain records for calibration: long CSV ``time,mm``, NOAA GHCN-Daily, the wide day-by-month layout.

Each reader returns a :class:`RainSeries` on a regular grid (daily or hourly) with NaN where the
source has no value: gaps are kept and reported, never filled. Every refusal names the file and the
line (and column, in the wide layout) and says how to fix it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from agent.errors import RainCatalogueError

DAY_S = 86400.0
HOUR_S = 3600.0
UNITS_TO_MM: dict[str, float] = {"mm": 1.0, "in": 25.4, "inch": 25.4, "inches": 25.4, "cm": 10.0}
TIME_NAMES = ("time", "date", "datetime", "timestamp")
MONTHS = {
    **{
        m: i + 1
        for i, m in enumerate(
            ["jan", "fev", "mar", "abr", "mai", "jun", "jul", "ago", "set", "out", "nov", "dez"]
        )
    },
    **{
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
}
_WIDE_COL = re.compile(r"^([a-z]{3})[-/ ]?(\d{2}|\d{4})$")
_VALUE_UNIT = re.compile(r"^\s*([-+0-9.eE]+)\s*([a-z]*)\s*$")


@dataclass(frozen=True)
class RainSeries:
    """Rain per step on a regular grid from ``start`` (epoch s, UTC): ``mm[i]`` is the step starting at
    ``start + i*step_s``; NaN = no value in the source. ``where[i]`` names the source line of each step."""

    path: str
    layout: str  # long | noaa | wide
    step_s: float  # 86400 (daily) or 3600 (hourly)
    start: float
    mm: NDArray[np.float64]
    where: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "hourly" if self.step_s == HOUR_S else "daily"

    def gaps(self) -> list[tuple[float, int, str]]:
        """Runs of missing steps: (start epoch, steps, where the record resumes)."""
        bad = ~np.isfinite(self.mm)
        out: list[tuple[float, int, str]] = []
        i = 0
        while i < bad.size:
            if not bad[i]:
                i += 1
                continue
            j = i
            while j < bad.size and bad[j]:
                j += 1
            after = self.where[j] if j < bad.size else "end of file"
            out.append((self.start + i * self.step_s, j - i, after))
            i = j
        return out


def iso_day(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d")  # noqa: UP017 (3.10)


def iso_time(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")  # noqa: UP017


def _text_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise RainCatalogueError(f"{path} not found", fix="check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = text.splitlines()
    if not any(ln.strip() for ln in lines[1:]):
        raise RainCatalogueError(f"{path}: the file is empty (no data row)", fix="export the record again")
    return lines


def sniff_sep(line: str) -> str:
    for sep in (";", "\t", ","):
        if sep in line:
            return sep
    return ","


def parse_time(cell: str, where: str) -> tuple[float, bool]:
    """ISO 8601 date or date-time (naive = UTC) -> (epoch s, has a time of day)."""
    s = cell.strip()
    try:
        if len(s) == 10:
            d = datetime.strptime(s, "%Y-%m-%d")
            return d.replace(tzinfo=timezone.utc).timestamp(), False  # noqa: UP017
        d = datetime.fromisoformat(s.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError as exc:
        raise RainCatalogueError(
            f"{where}: {cell!r} is not an ISO 8601 date or date-time",
            fix="write times as YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z]",
        ) from exc
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)  # noqa: UP017
    return d.timestamp(), True


def _unit_of(name: str) -> str | None:
    n = name.strip().lower().replace("(", "_").replace(")", "").replace(" ", "_").strip("_")
    for prefix in ("", "rain_", "precip_", "prcp_", "rainfall_"):
        if n.startswith(prefix) and n[len(prefix) :] in UNITS_TO_MM:
            return n[len(prefix) :]
    return None


def read_long(path: Path, time_label: str = "end") -> RainSeries:
    """Long CSV ``time,mm`` (or ``time,in``; optional ``unit`` column; a value may carry its unit)."""
    lines = _text_lines(path)
    sep = sniff_sep(lines[0])
    head = [c.strip().lower() for c in lines[0].split(sep)]
    if len(head) < 2 or head[0] not in TIME_NAMES:
        raise RainCatalogueError(
            f"{path}:1: header {head} is not a rain record", fix="the header must be `time,mm` (or time,in)"
        )
    col_unit = _unit_of(head[1])
    if col_unit is None:
        raise RainCatalogueError(
            f"{path}:1: unknown rain unit in column {head[1]!r}",
            fix=f"name the column after its unit: one of {sorted(UNITS_TO_MM)} (e.g. `time,mm`)",
        )
    unit_col = head.index("unit") if "unit" in head else head.index("units") if "units" in head else None
    times: list[float] = []
    values: list[float] = []
    lines_no: list[int] = []
    seen_unit: tuple[str, int] | None = None
    has_clock: bool | None = None
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split(sep)]
        where = f"{path}:{no}"
        if len(cells) < 2:
            raise RainCatalogueError(
                f"{where}: too few cells in {line!r}", fix="write `time,mm` on every row"
            )
        t, clock = parse_time(cells[0], where)
        if has_clock is not None and clock != has_clock:
            raise RainCatalogueError(
                f"{where}: dates and date-times are mixed", fix="use one kind of time stamp in the whole file"
            )
        has_clock = clock
        value, unit = _value(cells[1], col_unit, where)
        if unit_col is not None and unit_col < len(cells) and cells[unit_col]:
            unit = cells[unit_col].lower()
            if unit not in UNITS_TO_MM:
                raise RainCatalogueError(
                    f"{where}: unknown unit {unit!r}", fix=f"use one of {sorted(UNITS_TO_MM)}"
                )
        if seen_unit is None:
            seen_unit = (unit, no)
        elif UNITS_TO_MM[unit] != UNITS_TO_MM[seen_unit[0]]:
            raise RainCatalogueError(
                f"{where}: unit {unit!r} differs from {seen_unit[0]!r} at line {seen_unit[1]} (mixed units)",
                fix="convert the whole record to one unit before importing",
            )
        if times and t <= times[-1]:
            kind = "duplicated" if t == times[-1] else "unsorted"
            raise RainCatalogueError(
                f"{where}: {kind} time {cells[0]!r} (line {lines_no[-1]} has {iso_time(times[-1])})",
                fix="sort the rows by time and keep one row per time step",
            )
        times.append(t)
        values.append(value * UNITS_TO_MM[unit])
        lines_no.append(no)
    if not times:
        raise RainCatalogueError(f"{path}: the file is empty (no data row)", fix="export the record again")
    return _on_grid(path, np.array(times), np.array(values), lines_no, bool(has_clock), time_label)


def _value(cell: str, unit: str, where: str) -> tuple[float, str]:
    if cell.strip().lower() in ("", "nan", "na"):
        return math.nan, unit
    m = _VALUE_UNIT.match(cell.lower())
    if m is None:
        raise RainCatalogueError(f"{where}: {cell!r} is not a rain amount", fix="write a number (mm) per row")
    try:
        value = float(m.group(1))
    except ValueError as exc:
        raise RainCatalogueError(f"{where}: {cell!r} is not a number", fix="repair that row") from exc
    if m.group(2):
        if m.group(2) not in UNITS_TO_MM:
            raise RainCatalogueError(
                f"{where}: unknown unit {m.group(2)!r}", fix=f"use one of {sorted(UNITS_TO_MM)}"
            )
        unit = m.group(2)
    if value < 0 or not math.isfinite(value):
        raise RainCatalogueError(f"{where}: rain {cell!r} is negative or not finite", fix="repair that row")
    return value, unit


def _on_grid(
    path: Path, t: NDArray[np.float64], v: NDArray[np.float64], nos: list[int], clock: bool, label: str
) -> RainSeries:
    notes: list[str] = []
    diffs = np.diff(t)
    step = float(np.median(diffs)) if diffs.size else DAY_S
    if not clock or step >= DAY_S:
        if clock and step != DAY_S:
            raise RainCatalogueError(
                f"{path}: time step {step:g} s is neither hourly nor daily", fix="resample"
            )
        t = np.floor(t / DAY_S) * DAY_S  # a daily total stamped with a time of day belongs to that date
        step_s = DAY_S
    elif HOUR_S % step == 0 or step == HOUR_S:
        if label == "end":
            t = t - step  # a value stamped 01:00 is the rain of 00:00-01:00
        if step < HOUR_S:
            notes.append(f"{step / 60:g}-minute steps summed into hours")
        step_s = HOUR_S
    else:
        raise RainCatalogueError(
            f"{path}: the usual time step is {step:g} s, which does not divide an hour",
            fix="export hourly or daily totals",
        )
    idx = np.floor((t - t[0] // step_s * step_s) / step_s).astype(np.int64)
    start = float(t[0] // step_s * step_s)
    if step_s == HOUR_S:
        off = (t - start) % step
        bad = np.flatnonzero(np.abs(off) > 1e-6)
        if bad.size:
            i = int(bad[0])
            raise RainCatalogueError(
                f"{path}:{nos[i]}: time {iso_time(float(t[i]))} is off the {step:g} s grid",
                fix="repair that row",
            )
    if step_s == DAY_S:
        dup = np.flatnonzero(np.diff(idx) == 0)
        if dup.size:
            i = int(dup[0]) + 1
            raise RainCatalogueError(
                f"{path}:{nos[i]}: duplicated date {iso_day(float(t[i]))} (also line {nos[i - 1]})",
                fix="keep one row per day",
            )
    n = int(idx[-1]) + 1
    mm = np.full(n, np.nan)
    nan_in = np.zeros(n, dtype=bool)
    np.add.at(nan_in, idx, ~np.isfinite(v))
    sums = np.zeros(n)
    np.add.at(sums, idx, np.nan_to_num(v))
    counts = np.bincount(idx, minlength=n)
    per_hour = round(HOUR_S / step) if step_s == HOUR_S and step < HOUR_S else 1
    full = (counts == per_hour) & ~nan_in
    mm[full] = sums[full]
    where = [""] * n
    for i, no in zip(idx.tolist(), nos, strict=True):
        where[i] = where[i] or f"{path}:{no}"
    kind = "hourly" if step_s == HOUR_S else "daily"
    notes.insert(0, f"{kind} record detected (usual step {step:g} s), {len(nos)} rows")
    return RainSeries(str(path), "long", step_s, start, mm, where, notes)


def read_noaa(path: Path, units: str = "in") -> RainSeries:
    """NOAA GHCN-Daily DATE/PRCP export, through the project's existing reader (units: in or mm)."""
    from agent.errors import SiteSeriesError
    from export.data.pbo import read_ghcn_daily

    try:
        t, mm, repairs = read_ghcn_daily(path, units=units)
    except SiteSeriesError as exc:
        raise RainCatalogueError(exc.message, fix=exc.fix) from exc
    if repairs:
        raise RainCatalogueError(
            f"{path}: {repairs} (rows out of date order or duplicated dates)",
            fix="sort the export by DATE and keep one row per day",
        )
    if t.size == 0:
        raise RainCatalogueError(f"{path}: the file is empty (no data row)", fix="export the record again")
    start = float(t[0])
    idx = np.round((t - start) / DAY_S).astype(np.int64)
    grid = np.full(int(idx[-1]) + 1, np.nan)
    grid[idx] = mm
    where = [""] * grid.size
    for k, i in enumerate(idx.tolist()):
        where[i] = f"{path}:{k + 2}"
    return RainSeries(str(path), "noaa", DAY_S, start, grid, where, [f"NOAA GHCN-Daily PRCP ({units} -> mm)"])


def detect_layout(path: Path) -> str:
    lines = _text_lines(path)
    head = lines[0].upper()
    if "DATE" in head and "PRCP" in head:
        return "noaa"
    cells = [c.strip().lower() for c in lines[0].split(sniff_sep(lines[0]))]
    if cells and (cells[0] in ("dia", "day")) and any(_WIDE_COL.match(c) for c in cells[1:]):
        return "wide"
    return "long"


def read_rain(
    path: Path, layout: str = "auto", noaa_units: str = "in", time_label: str = "end"
) -> RainSeries:
    path = Path(path)
    kind = detect_layout(path) if layout == "auto" else layout
    if kind == "long":
        return read_long(path, time_label)
    if kind == "noaa":
        return read_noaa(path, noaa_units)
    if kind == "wide":
        from export.rain.wide import read_wide

        return read_wide(path)
    raise RainCatalogueError(f"rain layout {layout!r} unknown", fix="use auto, long, noaa or wide")
