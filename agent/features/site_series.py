"""The site-series CSV (docs/development.md, contract 2): one row per step, UTC times, NaN where missing.

File layout::

    # site: salmon-falls
    # station: BLKM
    # step: P1D
    # synthetic: false
    time,disp_e_mm,disp_n_mm,disp_u_mm,rain_mm,groundwater_m
    2017-01-15T00:00:00Z,0.0,0.0,0.0,nan,nan

In memory a :class:`SiteSeries` holds float64 epoch seconds and a dict of float64 columns. numpy only:
the gateway reads and builds the same series from its live store.

Rules of the reader (each is a clear :class:`SiteSeriesError` or a counted, documented repair):
- a required column missing, a non-numeric cell, a column in other units (``rain_in``, ``disp_e_m``),
  unsorted or duplicate times: error;
- missing steps on the declared step grid: NaN rows inserted, counted in ``repairs["gap_steps_filled"]``;
- negative rain, or a value outside its physical range: set to NaN, counted in ``repairs["invalid_values"]``.
"""

from __future__ import annotations

import calendar
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from agent.compat import UTC, fromisoformat
from agent.errors import SiteSeriesError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("disp_e_mm", "disp_n_mm", "disp_u_mm", "rain_mm")
# Optional columns: `disp_along_mm` is a displacement already measured along one direction (an
# extensometer, or a point whose components are not published); `completeness` is the fraction of the
# step's expected samples that the gateway's aggregation saw.
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "disp_along_mm",
    "groundwater_m",
    "pgv_mm_s",
    "seismic_events",
    "completeness",
)
KNOWN_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
# Physical range per column (inclusive); values outside are set to NaN and counted.
VALID_RANGE: dict[str, tuple[float, float]] = {
    "disp_e_mm": (-1e6, 1e6),
    "disp_n_mm": (-1e6, 1e6),
    "disp_u_mm": (-1e6, 1e6),
    "disp_along_mm": (-1e6, 1e6),
    "rain_mm": (0.0, 2000.0),
    "groundwater_m": (-1e4, 1e4),
    "pgv_mm_s": (0.0, 1e5),
    "seismic_events": (0.0, 1e6),
    "completeness": (0.0, 1.0),
}
# Column names that betray other units: suffix -> the suffix we expect instead.
_UNIT_SUFFIXES: dict[str, str] = {"_in": "_mm", "_inch": "_mm", "_m": "_mm", "_cm": "_mm", "_ft": "_m"}
MAX_STEPS = 5_000_000  # a series longer than this is a wrong time, not a real record
_STEP_RE = re.compile(r"^P(?:(\d+)D|(\d+)M|T(\d+)H|T(\d+)M)$")


def step_seconds(step: str) -> float | None:
    """Seconds of an ISO 8601 step ("P1D", "P11D", "PT1H", "PT10M"); None for calendar months ("P1M")."""
    m = _STEP_RE.match(step)
    if m is None:
        raise SiteSeriesError(
            f"step {step!r} is not a supported ISO 8601 duration",
            fix="use PnD (days), PnM (calendar months), PTnH (hours) or PTnM (minutes), e.g. P1D",
        )
    days, months, hours, minutes = m.groups()
    if days:
        return int(days) * 86400.0
    if months:
        return None
    if hours:
        return int(hours) * 3600.0
    return int(minutes) * 60.0


def _add_months(t: float, n: int) -> float:
    d = datetime.fromtimestamp(t, UTC)
    month0 = d.month - 1 + n
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day).timestamp()


def step_grid(start: float, end: float, step: str) -> np.ndarray:
    """All step times from ``start`` to ``end`` inclusive on the declared step."""
    sec = step_seconds(step)
    approx = (end - start) / (sec or 28 * 86400.0)
    if approx > MAX_STEPS:
        raise SiteSeriesError(
            f"{to_iso(start)}..{to_iso(end)} spans {approx:.3g} steps of {step} (limit {MAX_STEPS})",
            fix="check the times (a wrong year?) or use a coarser step",
        )
    if sec is not None:
        n = math.floor((end - start) / sec + 1e-9) + 1
        return start + sec * np.arange(n, dtype=np.float64)
    m = _STEP_RE.match(step)
    months = int(m.group(2)) if m else 1
    out = [start]
    while True:
        nxt = _add_months(start, months * len(out))
        if nxt > end + 1e-6:
            break
        out.append(nxt)
    return np.asarray(out, dtype=np.float64)


def to_iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """ISO 8601 UTC ('2017-01-15T00:00:00Z', '2017-01-15'); a time with another offset is an error."""
    s = text.strip()
    try:
        d = fromisoformat(s)  # 3.10's datetime.fromisoformat does not read 'Z'
    except ValueError as exc:
        raise SiteSeriesError(
            f"time {text!r} is not ISO 8601", fix="write times as YYYY-MM-DDTHH:MM:SSZ (UTC)"
        ) from exc
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    elif d.utcoffset() != UTC.utcoffset(None):
        raise SiteSeriesError(
            f"time {text!r} is not UTC", fix="convert the times to UTC and write a Z suffix"
        )
    return d.timestamp()


@dataclass
class SiteSeries:
    """One station's series on a regular step grid. ``columns`` hold float64 arrays as long as ``times``."""

    times: np.ndarray
    columns: dict[str, np.ndarray]
    meta: dict[str, str] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.times.shape[0])

    @property
    def step(self) -> str:
        return self.meta.get("step", "P1D")

    @property
    def station(self) -> str:
        return self.meta.get("station", "unknown")

    @property
    def synthetic(self) -> bool:
        return self.meta.get("synthetic", "false").strip().lower() == "true"

    def column(self, name: str) -> np.ndarray:
        """The column, or all-NaN when the series does not have it."""
        col = self.columns.get(name)
        return col if col is not None else np.full(len(self), np.nan)

    def has_data(self, name: str) -> bool:
        col = self.columns.get(name)
        return col is not None and bool(np.isfinite(col).any())

    def slice(self, start: int, stop: int) -> SiteSeries:
        return SiteSeries(
            self.times[start:stop].copy(),
            {k: v[start:stop].copy() for k, v in self.columns.items()},
            dict(self.meta),
            dict(self.repairs),
        )


def validate(series: SiteSeries) -> None:
    """Structural checks shared by reader, writer and importers; raises SiteSeriesError."""
    n = len(series)
    missing = [c for c in REQUIRED_COLUMNS if c not in series.columns]
    if missing:
        raise SiteSeriesError(
            f"site series {series.station!r} lacks required column(s) {missing}",
            fix=f"provide {', '.join(REQUIRED_COLUMNS)} (NaN where not measured)",
        )
    for name, col in series.columns.items():
        if col.shape != (n,):
            raise SiteSeriesError(
                f"column {name!r} has {col.shape} values for {n} times",
                fix="give every column one value per time",
            )
    if n > 1:
        d = np.diff(series.times)
        if np.any(d == 0):
            i = int(np.argmax(d == 0))
            raise SiteSeriesError(
                f"duplicate time {to_iso(float(series.times[i]))} in {series.station!r}",
                fix="keep one row per step (re-run the importer, which merges duplicates)",
            )
        if np.any(d < 0):
            i = int(np.argmax(d < 0))
            raise SiteSeriesError(
                f"times are not sorted at {to_iso(float(series.times[i + 1]))} in {series.station!r}",
                fix="sort the rows by time (the importers do this and count it)",
            )


def check_units(names: list[str]) -> None:
    """A column named in other units than the contract's is an error, never silently reinterpreted."""
    for name in names:
        if name in KNOWN_COLUMNS or name == "time":
            continue
        for suffix, expected in _UNIT_SUFFIXES.items():
            stem = name[: -len(suffix)]
            if name.endswith(suffix) and stem + expected in KNOWN_COLUMNS:
                raise SiteSeriesError(
                    f"column {name!r} is in other units than the site-series contract's {stem + expected!r}",
                    fix=f"convert it to {expected.lstrip('_')} and name it {stem + expected!r}",
                )


def clean_ranges(columns: Mapping[str, np.ndarray], repairs: dict[str, int]) -> dict[str, np.ndarray]:
    """Values outside VALID_RANGE become NaN, counted in repairs['invalid_values']."""
    out: dict[str, np.ndarray] = {}
    for name, col in columns.items():
        col = np.asarray(col, dtype=np.float64).copy()
        lo, hi = VALID_RANGE.get(name, (-np.inf, np.inf))
        with np.errstate(invalid="ignore"):
            bad = np.isfinite(col) & ((col < lo) | (col > hi))
        bad |= np.isinf(col)
        if bad.any():
            repairs["invalid_values"] = repairs.get("invalid_values", 0) + int(bad.sum())
            log.warning("column %s: %d value(s) outside [%s, %s] set to NaN", name, int(bad.sum()), lo, hi)
            col[bad] = np.nan
        out[name] = col
    return out


def regularize(
    times: np.ndarray, columns: Mapping[str, np.ndarray], step: str, repairs: dict[str, int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Put sorted, unique times on the step grid; missing steps become NaN rows (counted).

    A time that is not on the grid (off by more than 1 % of a step) is an error.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return times, {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    grid = step_grid(float(times[0]), float(times[-1]), step)
    idx = np.searchsorted(grid, times)
    idx = np.clip(idx, 0, grid.size - 1)
    near = np.abs(grid[idx] - times)
    left = np.clip(idx - 1, 0, grid.size - 1)
    use_left = np.abs(grid[left] - times) < near
    idx = np.where(use_left, left, idx)
    tol = 0.01 * (step_seconds(step) or 86400.0 * 28)
    off = np.abs(grid[idx] - times) > tol
    if off.any():
        t_bad = to_iso(float(times[int(np.argmax(off))]))
        raise SiteSeriesError(
            f"time {t_bad} is not on the {step} step grid starting {to_iso(float(grid[0]))}",
            fix="resample the source to the declared step before importing, or declare the right step",
        )
    filled = grid.size - times.size
    if filled:
        repairs["gap_steps_filled"] = repairs.get("gap_steps_filled", 0) + int(filled)
    out = {}
    for name, col in columns.items():
        full = np.full(grid.size, np.nan)
        full[idx] = np.asarray(col, dtype=np.float64)
        out[name] = full
    return grid, out


def read_site_series(path: Path | str) -> SiteSeries:
    """Read a site-series CSV; see the module docstring for what is an error and what is repaired."""
    path = Path(path)
    if not path.is_file():
        raise SiteSeriesError(f"site series {path} not found", fix="check the path, or import the data first")
    meta: dict[str, str] = {}
    header: list[str] | None = None
    rows: list[list[str]] = []
    line_no: list[int] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SiteSeriesError(
            f"{path} is not UTF-8 text (byte {exc.start})", fix="save the site series as UTF-8 CSV"
        ) from exc
    for i, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition(":")
            if sep:
                meta[key.strip()] = value.strip()
            continue
        cells = [c.strip() for c in line.split(",")]
        if header is None:
            header = cells
            continue
        rows.append(cells)
        line_no.append(i)
    if header is None or not header or header[0] != "time":
        raise SiteSeriesError(
            f"{path} has no header row starting with 'time'", fix="write the site-series header"
        )
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise SiteSeriesError(
            f"{path}: column(s) {dup} appear more than once", fix="keep one column per name"
        )
    check_units(header)
    unknown = [c for c in header[1:] if c not in KNOWN_COLUMNS]
    if unknown:
        log.info("%s: columns %s are not in the contract and are kept as is", path, unknown)
    times = np.empty(len(rows))
    values = np.full((len(rows), len(header) - 1), np.nan)
    for r, (cells, ln) in enumerate(zip(rows, line_no, strict=True)):
        if len(cells) != len(header):
            raise SiteSeriesError(
                f"{path}:{ln} has {len(cells)} cells, the header has {len(header)}", fix="repair that row"
            )
        times[r] = parse_iso(cells[0])
        for c, cell in enumerate(cells[1:]):
            if cell == "" or cell.lower() in ("nan", "na", "null"):
                continue
            try:
                values[r, c] = float(cell)
            except ValueError as exc:
                raise SiteSeriesError(
                    f"{path}:{ln} column {header[c + 1]!r} has non-numeric value {cell!r}",
                    fix="write a number in mm/m/mm/s, or leave the cell empty / 'nan' when missing",
                ) from exc
    columns = {name: values[:, c] for c, name in enumerate(header[1:])}
    meta.setdefault("step", "P1D")
    meta.setdefault("station", path.stem)
    repairs: dict[str, int] = {}
    probe = SiteSeries(times, columns, meta, repairs)
    validate(probe)
    columns = clean_ranges(columns, repairs)
    grid, columns = regularize(times, columns, meta["step"], repairs)
    if repairs:
        log.info("%s: repairs %s", path, repairs)
    return SiteSeries(grid, columns, meta, repairs)


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.10g}"


def write_site_series(series: SiteSeries, path: Path | str) -> Path:
    """Write the CSV with its ``# key: value`` header; required columns first, then the others."""
    validate(series)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [c for c in KNOWN_COLUMNS if c in series.columns]
    names += sorted(c for c in series.columns if c not in KNOWN_COLUMNS)
    meta = dict(series.meta)
    meta.setdefault("step", "P1D")
    meta.setdefault("synthetic", "false")
    if series.repairs:
        meta["repairs"] = " ".join(f"{k}={v}" for k, v in sorted(series.repairs.items()))
    lines = [f"# {k}: {v}" for k, v in meta.items()]
    lines.append(",".join(["time", *names]))
    cols = [series.columns[n] for n in names]
    for i, t in enumerate(series.times):
        lines.append(",".join([to_iso(float(t)), *(_fmt(float(c[i])) for c in cols)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
