"""The wide day-by-month rain layout (the Cubatão gauge file): a `Dia` column and one column per month.

Days that do not exist (31 February) must be empty; an empty cell on a day that exists is a gap.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from agent.errors import RainCatalogueError
from export.rain.series import _WIDE_COL, DAY_S, MONTHS, RainSeries, _text_lines, _value, iso_day, sniff_sep


def read_wide(path: Path) -> RainSeries:
    """Day-by-month layout: a `Dia` (day) column and one column per month (`jan-00` ... `dez-16`)."""
    lines = _text_lines(path)
    sep = sniff_sep(lines[0])
    head = [c.strip().lower() for c in lines[0].split(sep)]
    months: list[tuple[int, int, int]] = []  # (column, year, month)
    for j, name in enumerate(head):
        if name in ("dia", "day", ""):
            continue
        m = _WIDE_COL.match(name)
        if m is None or m.group(1) not in MONTHS:
            raise RainCatalogueError(
                f"{path}:1 column {j + 1}: {name!r} is not a month column",
                fix="name month columns like jan-00",
            )
        yy = int(m.group(2))
        months.append((j, yy if yy > 100 else 2000 + yy if yy < 70 else 1900 + yy, MONTHS[m.group(1)]))
    if not months:
        raise RainCatalogueError(f"{path}:1: no month columns", fix="name month columns like jan-00")
    for (_, y0, m0), (j, y1, m1) in itertools.pairwise(months):
        if (y1, m1) <= (y0, m0):
            kind = "duplicated" if (y1, m1) == (y0, m0) else "unsorted"
            raise RainCatalogueError(
                f"{path}:1 column {j + 1}: {kind} month {head[j]!r}", fix="one column per month, in order"
            )
    start = datetime(months[0][1], months[0][2], 1, tzinfo=timezone.utc).timestamp()  # noqa: UP017
    y_end, m_end = months[-1][1], months[-1][2]
    end = datetime(y_end + m_end // 12, m_end % 12 + 1, 1, tzinfo=timezone.utc).timestamp()  # noqa: UP017
    n = round((end - start) / DAY_S)
    mm = np.full(n, np.nan)
    where = [""] * n
    present_months = {(y, m) for _, y, m in months}
    rows = [
        (no, [c.strip() for c in ln.split(sep)]) for no, ln in enumerate(lines[1:], start=2) if ln.strip()
    ]
    seen_days: dict[int, int] = {}
    for no, cells in rows:
        try:
            day = int(float(cells[0]))
        except ValueError as exc:
            raise RainCatalogueError(f"{path}:{no}: day {cells[0]!r} is not a number", fix="repair") from exc
        if day in seen_days:
            raise RainCatalogueError(
                f"{path}:{no}: duplicated day {day} (also line {seen_days[day]})", fix="one row per day"
            )
        seen_days[day] = no
        for j, y, mon in months:
            cell = cells[j] if j < len(cells) else ""
            try:
                t = datetime(y, mon, day, tzinfo=timezone.utc).timestamp()  # noqa: UP017
            except ValueError:
                if cell:
                    raise RainCatalogueError(
                        f"{path}:{no} column {head[j]}: a value on day {day}, which that month lacks",
                        fix="clear that cell",
                    ) from None
                continue
            value, _ = _value(cell.replace(",", "."), "mm", f"{path}:{no} column {head[j]}")
            i = round((t - start) / DAY_S)
            mm[i] = value
            where[i] = f"{path}:{no} column {head[j]}"
    missing_months = [
        (y, m) for y, m in _months_between(months[0][1:], (y_end, m_end)) if (y, m) not in present_months
    ]
    notes = [f"daily record, wide day-by-month layout, {len(months)} months (mm)"]
    if missing_months:
        notes.append(f"{len(missing_months)} month(s) without a column: {missing_months[:5]}")
    for i in range(n):
        where[i] = where[i] or f"{path} (no cell for {iso_day(start + i * DAY_S)})"
    return RainSeries(str(path), "wide", DAY_S, start, mm, where, notes)


def _months_between(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    out, (y, m) = [], a
    while (y, m) <= b:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out
