"""Tests of agent/history.py and of the real demo state (helpers/demo_state.py) the report tests read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.demo_state import demo_state

from agent.history import (
    HISTORY_FILE,
    History,
    LevelRecord,
    levels_of,
    parse_line,
    read_history,
    save_riskmap,
)


# ---- tests of agent/history.py --------------------------------------------------------------------
def _status(t: float, pub: int | None, **levels: int) -> dict[str, Any]:
    return {"time": t, "published_level": pub, "sources": {k: {"level": v} for k, v in levels.items()}}


def test_history_records_only_changes_and_keepalive(tmp_path: Path) -> None:
    h = History(tmp_path / HISTORY_FILE, keepalive_s=100.0)
    assert h.record_status(_status(0.0, 0, wire=0, rainfall=0))
    assert not h.record_status(_status(10.0, 0, wire=0, rainfall=0))  # unchanged
    assert h.record_status(_status(20.0, 1, wire=0, rainfall=1))  # changed
    assert not h.record_status(_status(50.0, 1, wire=0, rainfall=1))
    assert h.record_status(_status(121.0, 1, wire=0, rainfall=1))  # keep-alive due
    assert not h.record_status({"published_level": 1})  # no time: counted, not written
    assert h.counters["dropped.no_time"] == 1
    data = read_history(tmp_path / HISTORY_FILE)
    assert [(r.t, r.published, r.sources["rainfall"]) for r in data.levels] == [
        (0.0, 0, 0),
        (20.0, 1, 1),
        (121.0, 1, 1),
    ]


@pytest.mark.faults
def test_history_skips_and_counts_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    h = History(path)
    h.record_status(_status(5.0, 2, wire=0))
    with open(path, "a") as fh:
        fh.write('{"kind": "levels", "t": "soon"}\nnot json\n{"kind": "mystery", "t": 1}\n{"kind":"lev')
    assert h.record_forecast(t=6.0, valid_from=0.0, horizon_s=86400, value_mm=1.5, lo_mm=0.5, hi_mm=2.5)
    assert not h.record_forecast(t=7.0, valid_from=0.0, horizon_s=86400, value_mm=math.nan, lo_mm=0, hi_mm=1)
    assert h.counters["dropped.not_finite"] == 1
    data = read_history(path)
    # The torn last line and the forecast appended after it share a line: both lost, and counted.
    assert data.dropped["bad_line"] == 4
    assert [r.published for r in data.levels] == [2]
    with pytest.raises(ValueError, match="unknown kind"):
        parse_line('{"kind": "mystery", "t": 1}')
    with pytest.raises(ValueError, match="finite"):
        parse_line('{"kind": "levels", "t": NaN, "sources": {}}')


def test_history_window_and_trim(tmp_path: Path) -> None:
    path = tmp_path / HISTORY_FILE
    h = History(path, keepalive_s=0.0, max_bytes=4000)
    for i in range(200):
        h.record_status(_status(float(i), i % 4, wire=i % 4))
    assert path.stat().st_size <= 4000
    data = read_history(path)
    assert data.levels[-1].t == 199.0 and h.counters["trimmed_lines"] > 0
    assert [r.t for r in read_history(path, 190.0, 195.0).levels] == [190.0, 191.0, 192.0, 193.0, 194.0]


def test_levels_of_tolerates_odd_status() -> None:
    assert levels_of({"published_level": True, "sources": {"wire": {"level": "x"}, "rain": 3}}) == (
        None,
        {"wire": -1, "rain": -1},
    )
    assert levels_of({}) == (None, {})


@pytest.mark.faults
def test_save_riskmap_roundtrip(tmp_path: Path) -> None:
    from agent.report.data import read_riskmap

    prob = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    save_riskmap(tmp_path, prob, t=1_700_000_000.0, threshold=0.5, synthetic=True)
    rm = read_riskmap(tmp_path)
    assert rm is not None and rm.synthetic and rm.threshold == 0.5 and rm.t == 1_700_000_000.0
    np.testing.assert_allclose(rm.probability, prob, atol=1e-7)
    with pytest.raises(ValueError, match="2-D"):
        save_riskmap(tmp_path, np.zeros(4), t=0.0)
    (tmp_path / "riskmap.npz").write_bytes(b"garbage")
    assert read_riskmap(tmp_path) is None  # unreadable: left out with a warning, never a crash


def test_demo_state_records_real_history() -> None:
    demo = demo_state()
    data = read_history(demo.paths.state_dir / HISTORY_FILE)
    assert demo.statuses > 10
    assert demo.forecasts > 0, "the demo published no forecast (machine overloaded? GNSS steps incomplete)"
    assert len(data.forecasts) == demo.forecasts
    assert all(isinstance(r, LevelRecord) for r in data.levels)
    # The SYNTHETIC storm raises the level (rain, then motion and the wire alarm late in the run: how far
    # it gets depends on the machine's load), and every source's level is recorded.
    published = [r.published for r in data.levels if r.published is not None]
    assert published[0] == 0 and max(published) >= 1
    assert {"wire", "rainfall", "forecast"} <= set(data.levels[-1].sources)


def test_level_since() -> None:
    from agent.history import level_since

    recs = [
        LevelRecord(0.0, 0, {}),
        LevelRecord(5.0, 2, {}),
        LevelRecord(6.0, None, {}),
        LevelRecord(7.0, 2, {}),
        LevelRecord(9.0, 1, {}),
        LevelRecord(12.0, 2, {}),
        LevelRecord(15.0, 2, {}),
    ]
    assert level_since(recs, 2) == 12.0
    assert level_since(recs[:4], 2) == 5.0
    assert level_since(recs, 3) is None and level_since([], 0) is None
