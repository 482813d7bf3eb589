"""What a report shows, read from the daemon's state without disturbing a running daemon.

Sources: ``<state_dir>/status.json`` (latest evaluation), the SQLite store opened read-only (daily and
hourly steps, raw seismic triggers and wire states), ``<state_dir>/history.jsonl`` (level changes and
forecasts, :mod:`agent.history`) and ``<state_dir>/riskmap.npz`` when present. The window is the last
``days`` days of *data time*: it ends at the newest sample in the store (or the status time), so a
replayed or demo state dir reports its own period.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import StatePaths
from agent.errors import ReportError
from agent.features.aggregate import DAY_S, HOUR_S, StepTable, steps_from_rows
from agent.history import (
    HISTORY_FILE,
    NO_DATA,
    RISKMAP_FILE,
    HistoryData,
    LevelRecord,
    levels_of,
    read_history,
)
from agent.warning.settings import WarningSettings

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
DIAGNOSE_FILE = "diagnose.json"
# wire.state value -> the level the wire source stands for (0 intact, 1 tripped, 2 open, 3 short).
WIRE_STATE_LEVEL = {0: 0, 1: 3, 2: 1, 3: 1}


@dataclass
class RiskMap:
    probability: np.ndarray  # (H, W) in [0, 1]
    t: float | None
    threshold: float | None
    synthetic: bool


@dataclass
class ReportData:
    start: float
    end: float
    days: float
    site: str
    daily: StepTable | None
    hourly: StepTable | None
    triggers: np.ndarray  # epoch seconds of seismic trigger-ons
    pgv: tuple[np.ndarray, np.ndarray]
    wire: tuple[np.ndarray, np.ndarray]
    history: HistoryData
    status: dict[str, Any] | None
    warning: WarningSettings
    riskmap: RiskMap | None
    levels_derived: bool = False  # True when levels come from the wire state (no history file)
    dropped: Counter[str] = field(default_factory=Counter)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The daemon's status.json, or None when absent; a corrupt file raises ReportError."""
    path = state_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(
            f"status file {path} is unreadable: {exc}",
            fix="the daemon rewrites it atomically after each evaluation; wait a few seconds or restart it",
        ) from exc
    if not isinstance(data, dict):
        raise ReportError(f"status file {path} is not a JSON object", fix="restart the daemon to rewrite it")
    return data


def _connect_ro(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise ReportError(f"store {path} not found", fix="pass --config of this gateway (or --store FILE)")
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ReportError(f"store {path} cannot be opened read-only: {exc}", fix="check permissions") from exc


def _newest_data_t(conn: sqlite3.Connection) -> float | None:
    """The newest raw sample, or the end of the newest step (a store filled by a replay of daily data)."""
    row = conn.execute("SELECT MAX(t) FROM samples").fetchone()
    if row is not None and row[0] is not None:
        return float(row[0])
    row = conn.execute("SELECT MAX(start + step_s) FROM steps").fetchone()
    return None if row is None or row[0] is None else float(row[0]) - 1.0


def _steps(conn: sqlite3.Connection, step_s: int, start: float, end: float) -> StepTable:
    rows = conn.execute(
        "SELECT start, col, value, count, completeness FROM steps WHERE step_s=? AND start>=? AND start<?",
        (step_s, start, end),
    ).fetchall()
    return steps_from_rows(step_s, rows)


def _samples(
    conn: sqlite3.Connection, channel: str, start: float, end: float
) -> tuple[np.ndarray, np.ndarray]:
    rows = conn.execute(
        "SELECT s.t, s.value FROM samples s JOIN channels c ON c.id = s.channel_id"
        " WHERE c.name=? AND s.t>=? AND s.t<? ORDER BY s.t",
        (channel, start, end),
    ).fetchall()
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()


def read_riskmap(state_dir: Path) -> RiskMap | None:
    """``riskmap.npz`` (``probability`` (H, W) in [0, 1]; optional ``t``, ``threshold``, ``synthetic``)."""
    path = state_dir / RISKMAP_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            prob = np.asarray(npz["probability"], dtype=np.float64)
            t = float(npz["t"]) if "t" in npz else None
            thr = float(npz["threshold"]) if "threshold" in npz else None
            synthetic = bool(npz["synthetic"]) if "synthetic" in npz else False
    except (OSError, KeyError, ValueError) as exc:
        log.warning("risk map %s unreadable, left out of the report: %s", path, exc)
        return None
    if prob.ndim != 2 or prob.size == 0:
        log.warning("risk map %s has shape %s, expected (H, W): left out", path, prob.shape)
        return None
    return RiskMap(np.clip(np.nan_to_num(prob, nan=0.0), 0.0, 1.0), t, thr, synthetic)


def derive_levels(
    wire: tuple[np.ndarray, np.ndarray], status: dict[str, Any] | None, end: float
) -> list[LevelRecord]:
    """Levels over time without a history file (pure): the wire source from the raw wire states, and
    the latest status (placed at ``min(status time, end - 1 s)`` so the current levels show)."""
    out: list[LevelRecord] = []
    last: int | None = None
    for t, v in zip(wire[0].tolist(), wire[1].tolist(), strict=True):
        lvl = WIRE_STATE_LEVEL.get(int(v), NO_DATA) if math.isfinite(v) else NO_DATA
        if lvl != last:
            out.append(LevelRecord(t=float(t), published=None, sources={"wire": lvl}))
            last = lvl
    if status is not None and isinstance(status.get("time"), int | float):
        pub, sources = levels_of(status)
        out.append(LevelRecord(t=min(float(status["time"]), end - 1.0), published=pub, sources=sources))
    return out


def clamp_levels(levels: list[LevelRecord], end: float) -> list[LevelRecord]:
    """Records before ``end``, plus the newest later one moved to ``end - 1 s`` (pure): the daemon may
    evaluate after the newest sample (a replay or demo drains its outbox), and the current level shows."""
    inside = [r for r in levels if r.t < end]
    later = [r for r in levels if r.t >= end]
    if later:
        t = max(end - 1.0, inside[-1].t if inside else end - 1.0)
        inside.append(LevelRecord(t=t, published=later[-1].published, sources=later[-1].sources))
    return inside


def load_report_data(
    paths: StatePaths, days: float, *, warning: WarningSettings | None = None, site: str = ""
) -> ReportData:
    """Everything the plots need for the last ``days`` days of data time."""
    if not days > 0 or not math.isfinite(days):
        raise ReportError(f"--days {days} is not a positive number of days", fix="e.g. --days 7")
    status = read_status(paths.state_dir)
    conn = _connect_ro(paths.store)
    try:
        try:
            newest = _newest_data_t(conn)
        except sqlite3.Error as exc:
            raise ReportError(
                f"store {paths.store} is not a lews-agent store: {exc}", fix="pass the right --store/--config"
            ) from exc
        st = status.get("time") if status else None
        if newest is not None:
            end = newest + 1.0
        elif isinstance(st, int | float) and math.isfinite(st):
            end = float(st) + 1.0
        else:
            raise ReportError(
                f"no data in {paths.store} and no {STATUS_FILE} in {paths.state_dir}",
                fix="let the daemon run until it has stored samples, then report again",
            )
        start = end - days * DAY_S
        daily = _steps(conn, DAY_S, math.floor(start / DAY_S) * DAY_S, end)
        hourly = _steps(conn, HOUR_S, math.floor(start / HOUR_S) * HOUR_S, end)
        trig_t, trig_v = _samples(conn, "seismic.trigger", start, end)
        pgv = _samples(conn, "seismic.pgv_mm_s", start, end)
        wire = _samples(conn, "wire.state", start, end)
    finally:
        conn.close()
    history = read_history(paths.state_dir / HISTORY_FILE, start)
    history.levels = clamp_levels(history.levels, end)
    history.forecasts = [f for f in history.forecasts if f.t < end + DAY_S]
    derived = not history.levels
    if derived:
        history.levels = derive_levels(wire, status, end)
    return ReportData(
        start=start,
        end=end,
        days=days,
        site=site or (str(status.get("site", "")) if status else ""),
        daily=daily if len(daily) else None,
        hourly=hourly if len(hourly) else None,
        triggers=trig_t[trig_v >= 0.5],
        pgv=pgv,
        wire=wire,
        history=history,
        status=status,
        warning=warning or WarningSettings(),
        riskmap=read_riskmap(paths.state_dir),
        levels_derived=derived,
        dropped=Counter(history.dropped),
    )
