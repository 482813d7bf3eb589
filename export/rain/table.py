"""The tidy day table: one row per day, the landslide flag and count, and the rolling predictors.

Written as CSV with ``#`` header lines (sources, step, gaps). Days whose predictor windows touch a gap
(or reach before the record) are kept with ``usable = 0`` and empty predictors: reported, never filled.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from agent.errors import RainCatalogueError
from agent.features.rain_windows import (
    daily_predictors,
    day_predictor_names,
    hour_predictor_names,
    hourly_day_maxima,
)
from export.rain.landslides import Landslide
from export.rain.series import DAY_S, HOUR_S, RainSeries, iso_day, iso_time

log = logging.getLogger(__name__)
HEADER = "# lews rain-catalogue day table v1"


@dataclass
class DayTable:
    days: NDArray[np.float64]  # epoch s of each day start (UTC + day_offset_h)
    rain_mm: NDArray[np.float64]
    event: NDArray[np.bool_]
    count: NDArray[np.int64]
    predictors: dict[str, NDArray[np.float64]]
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def usable(self) -> NDArray[np.bool_]:
        ok = np.isfinite(self.rain_mm)
        for v in self.predictors.values():
            ok &= np.isfinite(v)
        return ok

    @property
    def names(self) -> list[str]:
        return list(self.predictors)

    def years(self) -> float:
        return float(self.usable.sum()) / 365.25

    def subset(self, keep: NDArray[np.bool_]) -> DayTable:
        return DayTable(
            self.days[keep],
            self.rain_mm[keep],
            self.event[keep],
            self.count[keep],
            {k: v[keep] for k, v in self.predictors.items()},
            dict(self.meta),
        )


def _day_totals(
    series: RainSeries, day_offset_h: float
) -> tuple[float, NDArray[np.float64], NDArray[np.float64] | None]:
    """(first day start, day totals, hourly grid aligned to day starts or None)."""
    if series.step_s == DAY_S:
        return series.start, series.mm, None
    offset = day_offset_h * HOUR_S
    first = math.floor((series.start - offset) / DAY_S) * DAY_S + offset
    lead = round((series.start - first) / HOUR_S)
    hours = np.concatenate((np.full(lead, np.nan), series.mm))
    tail = (-hours.size) % 24
    hours = np.concatenate((hours, np.full(tail, np.nan)))
    days = hours.reshape(-1, 24)
    total = np.where(np.isfinite(days).all(axis=1), np.nansum(days, axis=1), np.nan)
    return first, total, hours


def build_table(
    series: RainSeries,
    landslides: list[Landslide],
    landslides_path: str,
    day_offset_h: float = 0.0,
    max_gap_days: float = 2.0,
) -> DayTable:
    """Day table from a rain record and a landslide list (errors name the file and line)."""
    gaps = series.gaps()
    step_days = series.step_s / DAY_S
    for t0, n, after in gaps:
        if n * step_days > max_gap_days:
            fmt = iso_day if series.step_s == DAY_S else iso_time
            raise RainCatalogueError(
                f"{series.path}: gap of {n} {series.kind} step(s) from {fmt(t0)}, before {after} "
                f"(longer than {max_gap_days:g} days)",
                fix="supply the missing record, or cut the file at the gap (gaps are never filled); "
                "--max-gap-days raises the limit (the days touched are left out of the table)",
            )
    first, day_mm, hours = _day_totals(series, day_offset_h)
    days = (first + DAY_S * np.arange(day_mm.size)).astype(np.float64)
    preds = daily_predictors(day_mm)
    if hours is not None:
        preds |= hourly_day_maxima(hours)
    event = np.zeros(days.size, dtype=bool)
    count = np.zeros(days.size, dtype=np.int64)
    outside: list[int] = []
    for ls in landslides:
        i = round((ls.day + day_offset_h * HOUR_S - first) / DAY_S)
        if not 0 <= i < days.size:
            outside.append(ls.line)
            continue
        event[i] = True
        count[i] += ls.count
    table = DayTable(days, day_mm, event, count, preds)
    usable = table.usable
    gap_days = int((~np.isfinite(day_mm)).sum())
    on_gap = int((event & ~np.isfinite(day_mm)).sum())
    ev_usable = int((event & usable).sum())
    table.meta = {
        "rain": series.path,
        "layout": series.layout,
        "step": series.kind,
        "landslides": landslides_path,
        "day_offset_h": day_offset_h,
        "first_day": iso_day(days[0]),
        "last_day": iso_day(days[-1]),
        "days": int(days.size),
        "usable_days": int(usable.sum()),
        "gap_days": gap_days,
        "gaps": [
            {"from": (iso_day if series.step_s == DAY_S else iso_time)(t0), "steps": n, "before": after}
            for t0, n, after in gaps
        ],
        "landslides_total": int(sum(ls.count for ls in landslides)),
        "landslide_days": int(event.sum()),
        "landslide_days_usable": ev_usable,
        "landslides_outside_record": len(outside),
        "landslide_days_on_gaps": on_gap,
        "notes": series.notes,
    }
    if not event.any():
        raise RainCatalogueError(
            f"{landslides_path}: no landslide falls inside the rain record "
            f"({iso_day(days[0])}..{iso_day(days[-1])}); "
            f"first outside at line {outside[0] if outside else '-'}",
            fix="use a landslide list of the same place and years as the rain record",
        )
    if ev_usable == 0:
        raise RainCatalogueError(
            f"{landslides_path}: no landslide day has a complete rain window "
            "(all on gaps or in the first days)",
            fix="supply the rain record around the landslide dates",
        )
    for t0, n, after in gaps:
        log.warning(
            "%s: %d %s step(s) missing from %s (before %s); days touched are left out",
            series.path,
            n,
            series.kind,
            iso_day(t0),
            after,
        )
    return table


def write_table(table: DayTable, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(f"{HEADER}\n# meta: {json.dumps(table.meta, sort_keys=True)}\n")
        w = csv.writer(fh)
        w.writerow(["date", "event", "count", "usable", "rain_mm", *table.names])
        usable = table.usable
        for i in range(table.days.size):
            vals = [table.rain_mm[i], *(table.predictors[k][i] for k in table.names)]
            cells = ["" if not math.isfinite(float(v)) else f"{float(v):.2f}" for v in vals]
            w.writerow(
                [iso_day(table.days[i]), int(table.event[i]), int(table.count[i]), int(usable[i]), *cells]
            )


def read_table(path: Path) -> DayTable:
    """Read a day table written by :func:`write_table`."""
    from export.rain.landslides import parse_date

    path = Path(path)
    if not path.is_file():
        raise RainCatalogueError(
            f"{path} not found", fix="make it with `agent-export data import rain-catalogue`"
        )
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != HEADER:
        raise RainCatalogueError(
            f"{path}:1: not a day table", fix="make it with `agent-export data import rain-catalogue`"
        )
    meta = json.loads(lines[1].removeprefix("# meta: ")) if lines[1].startswith("# meta: ") else {}
    rows = list(csv.reader(lines[2:]))
    head, body = rows[0], rows[1:]
    if not body:
        raise RainCatalogueError(f"{path}: the table has no day", fix="import a longer record")
    names = head[5:]
    known = set(day_predictor_names()) | set(hour_predictor_names())
    unknown = [n for n in names if n not in known]
    if unknown or head[:5] != ["date", "event", "count", "usable", "rain_mm"]:
        raise RainCatalogueError(
            f"{path}:3: unexpected columns {unknown or head[:5]}", fix="re-import the table"
        )

    def num(c: str) -> float:
        return float(c) if c else math.nan

    days = np.array([parse_date(r[0], f"{path}:{i + 4}") for i, r in enumerate(body)])
    return DayTable(
        days,
        np.array([num(r[4]) for r in body]),
        np.array([r[1] == "1" for r in body]),
        np.array([int(r[2]) for r in body], dtype=np.int64),
        {n: np.array([num(r[5 + j]) for r in body]) for j, n in enumerate(names)},
        meta,
    )
