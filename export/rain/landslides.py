"""Landslide lists: a CSV with a ``date`` column (ISO or dd/mm/yyyy), optional ``time`` and ``count``.

One row per landslide (several rows on storm days are normal; their order does not matter). Other
columns (place names, notes) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.errors import RainCatalogueError
from export.rain.series import _text_lines, sniff_sep

DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y")


@dataclass(frozen=True)
class Landslide:
    day: float  # epoch s of 00:00 UTC of the date
    time: str  # as written ("" when absent)
    count: int
    line: int


def parse_date(cell: str, where: str) -> float:
    s = cell.strip()[:10] if "T" in cell else cell.strip()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).timestamp()  # noqa: UP017
        except ValueError:
            continue
    raise RainCatalogueError(
        f"{where}: {cell!r} is not a date", fix="write dates as YYYY-MM-DD or dd/mm/yyyy"
    )


def read_landslides(path: Path) -> list[Landslide]:
    path = Path(path)
    lines = _text_lines(path)
    sep = sniff_sep(lines[0])
    head = [c.strip().lower() for c in lines[0].split(sep)]
    if "date" not in head:
        raise RainCatalogueError(
            f"{path}:1: no `date` column in {head}", fix="name the column of landslide dates `date`"
        )
    jd = head.index("date")
    jt = head.index("time") if "time" in head else None
    jc = head.index("count") if "count" in head else None
    out: list[Landslide] = []
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.split(sep)]
        where = f"{path}:{no}"
        if jd >= len(cells) or not cells[jd]:
            raise RainCatalogueError(f"{where}: no date", fix="write the landslide's date or delete the row")
        day = parse_date(cells[jd], where)
        count = 1
        if jc is not None and jc < len(cells) and cells[jc]:
            try:
                count = int(cells[jc])
            except ValueError as exc:
                raise RainCatalogueError(
                    f"{where}: count {cells[jc]!r} is not a whole number", fix="repair"
                ) from exc
            if count < 1:
                raise RainCatalogueError(f"{where}: count {count} < 1", fix="delete rows without a landslide")
        time = cells[jt] if jt is not None and jt < len(cells) else ""
        out.append(Landslide(day, time, count, no))
    if not out:
        raise RainCatalogueError(
            f"{path}: the file is empty (no landslide row)", fix="list one landslide per row"
        )
    return out
