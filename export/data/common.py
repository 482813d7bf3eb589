"""Helpers shared by the importers: delimited-text reading, sorting and merging duplicate times."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from agent.errors import SiteSeriesError
from agent.features.site_series import SiteSeries, clean_ranges, to_iso, validate

log = logging.getLogger(__name__)
_SPLIT = re.compile(r"[\t,;]|\s+")


def read_lines(path: Path) -> list[str]:
    """Text lines of a source file (latin-1 fallback for logger exports with a degree sign)."""
    path = Path(path)
    if not path.is_file():
        raise SiteSeriesError(f"source file {path} not found", fix="check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.splitlines()


def read_csv_table(path: Path, required: tuple[str, ...], *, fix: str) -> tuple[list[str], list[list[str]]]:
    """Header and stripped cells of a comma-separated table; a missing required column is a
    SiteSeriesError naming it (``fix`` says which files the importer expects)."""
    lines = [ln for ln in read_lines(path) if ln.strip()]
    head = [c.strip() for c in lines[0].split(",")] if lines else []
    missing = [c for c in required if c not in head]
    if missing:
        raise SiteSeriesError(f"{path}: column(s) {missing} missing from header {head}", fix=fix)
    return head, [[c.strip() for c in ln.split(",")] for ln in lines[1:]]


def split_cells(line: str, sep: str | None = None) -> list[str]:
    cells = line.split(sep) if sep else _SPLIT.split(line.strip())
    return [c.strip() for c in cells]


def parse_float(cell: str, where: str, missing: tuple[str, ...] = ("", "nan", "na")) -> float:
    if cell.strip().lower() in missing:
        return float("nan")
    try:
        return float(cell)
    except ValueError as exc:
        raise SiteSeriesError(
            f"{where}: {cell!r} is not a number", fix="repair or delete that row of the source file"
        ) from exc


def sort_and_merge(
    times: np.ndarray, values: np.ndarray, repairs: dict[str, int], what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Sort by time (counted as ``unsorted_rows``), drop exact duplicate rows (``duplicates_dropped``).

    Duplicate times with different values are an error: we cannot know which one is right.
    ``values`` is (N, C).
    """
    order = np.argsort(times, kind="stable")
    if np.any(order != np.arange(times.size)):
        moved = int(np.sum(order != np.arange(times.size)))
        repairs["unsorted_rows"] = repairs.get("unsorted_rows", 0) + moved
        log.warning("%s: %d row(s) out of time order, sorted", what, moved)
    times, values = times[order], values[order]
    keep = np.ones(times.size, dtype=bool)
    for i in np.nonzero(np.diff(times) == 0)[0]:
        a, b = values[i], values[i + 1]
        same = np.all((a == b) | (np.isnan(a) & np.isnan(b)))
        if not same:
            raise SiteSeriesError(
                f"{what}: two different rows for {to_iso(float(times[i]))}",
                fix="delete the wrong row from the source file; duplicates must agree to be merged",
            )
        keep[i + 1] = False
    dropped = int((~keep).sum())
    if dropped:
        repairs["duplicates_dropped"] = repairs.get("duplicates_dropped", 0) + dropped
        log.warning("%s: %d duplicate row(s) dropped", what, dropped)
    return times[keep], values[keep]


def day_index(times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Index into ``grid`` (sorted step starts) of the step holding each time; -1 when outside."""
    idx = np.searchsorted(grid, times, side="right") - 1
    return np.where((idx >= 0) & (times >= grid[0]), idx, -1)


def step_rain(sums: np.ndarray, counts: np.ndarray, repairs: dict[str, int]) -> np.ndarray:
    """Rain per step from the summed records; a step without any record is NaN (``rain_missing_steps``)."""
    if (counts == 0).any():
        repairs["rain_missing_steps"] = int((counts == 0).sum())
    return np.where(counts > 0, sums, np.nan)


def checked_series(
    grid: np.ndarray, cols: dict[str, np.ndarray], repairs: dict[str, int], meta: dict[str, str]
) -> SiteSeries:
    """The imported site series with out-of-range values cleaned (counted in ``repairs``), validated."""
    series = SiteSeries(grid, clean_ranges(cols, repairs), meta, repairs)
    validate(series)
    return series
