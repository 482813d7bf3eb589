"""The report's figures: pure level lanes, and panels that say "no data" instead of failing."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np

from agent.config import StatePaths
from agent.history import HistoryData, LevelRecord
from agent.report.data import ReportData, derive_levels, load_report_data
from agent.report.plots import level_lanes, plot_levels, render_all
from agent.warning.settings import WarningSettings


def test_level_lanes_merge_equal_spans() -> None:
    recs = [
        LevelRecord(0.0, 0, {"wire": 0, "rainfall": -1}),
        LevelRecord(10.0, 0, {"wire": 0, "rainfall": 1}),
        LevelRecord(20.0, 2, {"wire": 3, "rainfall": 1}),
    ]
    lanes = level_lanes(recs, end=30.0)
    assert list(lanes) == ["published", "wire", "rainfall"]
    assert lanes["published"] == [(0.0, 20.0, 0), (20.0, 10.0, 2)]
    assert lanes["wire"] == [(0.0, 20.0, 0), (20.0, 10.0, 3)]
    assert lanes["rainfall"] == [(0.0, 10.0, -1), (10.0, 20.0, 1)]
    assert level_lanes([], end=1.0) == {}


def test_derive_levels_from_wire_states() -> None:
    t = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    v = np.array([0.0, 0.0, 1.0, 2.0, np.nan])
    recs = derive_levels(
        (t, v), {"time": 99.0, "published_level": 3, "sources": {"wire": {"level": 3}}}, 50.0
    )
    assert [(r.t, r.sources.get("wire")) for r in recs[:-1]] == [(0.0, 0), (20.0, 3), (30.0, 1), (40.0, -1)]
    assert recs[-1].t == 49.0 and recs[-1].published == 3  # the status, clipped into the window


def _empty_data() -> ReportData:
    return ReportData(
        start=0.0,
        end=86400.0,
        days=1.0,
        site="",
        daily=None,
        hourly=None,
        triggers=np.zeros(0),
        pgv=(np.zeros(0), np.zeros(0)),
        wire=(np.zeros(0), np.zeros(0)),
        history=HistoryData(),
        status=None,
        warning=WarningSettings(),
        riskmap=None,
        dropped=Counter(),
    )


def test_plots_without_data_render() -> None:
    pngs = render_all(_empty_data())
    assert set(pngs) == {"levels", "displacement", "rain", "seismic"}
    assert all(p[:4] == b"\x89PNG" and len(p) > 5000 for p in pngs.values())


def test_store_with_status_only(tmp_path: Path) -> None:
    """An empty (but real) store and a status file: the window ends at the status time."""
    from agent.features.settings import StoreConfig
    from agent.features.store import Store

    Store(StoreConfig(path=tmp_path / "s.sqlite")).close()
    (tmp_path / "status.json").write_text('{"time": 1000000.0, "published_level": 1, "sources": {}}')
    data = load_report_data(StatePaths(tmp_path, tmp_path / "s.sqlite"), 2)
    assert data.end == 1000001.0 and data.daily is None
    assert data.history.levels[-1].published == 1
    assert plot_levels(data)[:4] == b"\x89PNG"
    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0
