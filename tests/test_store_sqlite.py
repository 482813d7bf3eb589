"""The SQLite store on real files in tmp_path: writing, reading, steps, retention, schema, full disk."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.errors import StoreError
from agent.features.aggregate import DAY_S, HOUR_S, Expectations, aggregate_samples
from agent.features.samples import Sample
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.features.store_db import SCHEMA_VERSION

T0 = 1_700_006_400.0  # 2023-11-15T00:00:00Z


def _cfg(tmp_path: Path, **kw: object) -> StoreConfig:
    return StoreConfig(path=tmp_path / "store.sqlite", **kw)  # type: ignore[arg-type]


def test_roundtrip_same_time_samples_and_bad_samples_are_counted(tmp_path: Path) -> None:
    samples = [Sample(T0 + k, "gnss.e_mm", float(k)) for k in range(1000)]
    with Store(_cfg(tmp_path, batch_max=128)) as store:
        assert sum(store.put(samples[k : k + 100]) for k in range(0, 1000, 100)) == 1000
        # Two samples of one channel at one time are both kept (two RAIN frames read in one chunk).
        assert store.put([Sample(T0 + 5000, "rain.mm", 0.2), Sample(T0 + 5000, "rain.mm", 0.4)]) == 2
        bad = [Sample(T0, "no.such", 1.0), Sample(T0, "rain.mm", math.nan), Sample(math.inf, "rain.mm", 1.0)]
        assert store.put(bad) == 0
        store.flush()
        data = store.read_samples(T0, T0 + 2000)
        assert sorted(data) == ["gnss.e_mm", "rain.mm"] and data["rain.mm"][0].size == 0
        np.testing.assert_array_equal(data["gnss.e_mm"][1], np.arange(1000.0))
        assert store.read_samples(T0 + 5000, T0 + 5001, ["rain.mm"])["rain.mm"][1].sum() == pytest.approx(0.6)
        assert store.channels() == {"gnss.e_mm": 1000, "rain.mm": 2}
        assert store.stats["committed"] == 1002
        assert store.stats["dropped.unknown_channel"] == 1
        assert store.stats["dropped.non_finite"] == 2
        assert store.stats["batches"] >= 10  # one put is atomic; batches never exceed batch_max=128
    # Committed data survives a reopen.
    with Store(_cfg(tmp_path)) as store:
        assert store.channels() == {"gnss.e_mm": 1000, "rain.mm": 2}


def test_many_writer_threads_and_concurrent_readers(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with Store(_cfg(tmp_path, flush_interval_s=0.01)) as store:

        def write(ch: str) -> None:
            for k in range(20):
                store.put([Sample(T0 + 100 * k + j, ch, float(j)) for j in range(100)])

        def read() -> None:
            try:
                for _ in range(30):
                    data = store.read_samples(T0, T0 + 10_000)
                    for t, _v in data.values():
                        if not np.all(np.diff(t) > 0):
                            raise AssertionError("unsorted read")
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=write, args=(ch,)) for ch in ("rain.mm", "gnss.n_mm", "wire.state")
        ]
        threads += [threading.Thread(target=read) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        store.flush()
        assert not errors
        assert store.channels() == {"rain.mm": 2000, "gnss.n_mm": 2000, "wire.state": 2000}


def test_reader_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    with Store(_cfg(tmp_path)) as store:
        store.put([Sample(T0, "rain.mm", 1.0)])
        store.flush()
        for _ in range(20):
            th = threading.Thread(target=store.channels)
            th.start()
            th.join()
        assert store.channels() == {"rain.mm": 1}
        assert len(store._readers) <= 2  # this thread's and at most the last ended one


def test_refresh_steps_matches_pure_aggregation_and_last_steps_fills_slots(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    samples = [Sample(T0 + 10.0 * k, "gnss.u_mm", float(rng.normal(-3, 1))) for k in range(3 * 360)]
    samples += [Sample(T0 + 60.0 * k, "rain.mm", 0.2 * (k % 3 == 0)) for k in range(1, 3 * 60 + 1)]
    expect = Expectations(gnss_period_s=10.0, rain_max_gap_s=120.0)
    with Store(_cfg(tmp_path)) as store:
        store.put(samples)
        store.flush()
        store.refresh_steps(HOUR_S, T0, T0 + 3 * HOUR_S, expect)
        store.flush()
        got = store.read_steps(HOUR_S, T0, T0 + 3 * HOUR_S)
        want = aggregate_samples(samples, HOUR_S, expect)
        np.testing.assert_array_equal(got.times, want.times[:3])
        for col in ("disp_u_mm", "rain_mm", "disp_u_spread_mm", "gnss_epochs"):
            np.testing.assert_allclose(got.values[col], want.values[col][:3], equal_nan=True)
            np.testing.assert_allclose(got.completeness[col], want.completeness[col][:3])
        assert list(got.counts["disp_u_mm"]) == [360, 360, 360]
        last = store.last_steps(HOUR_S, 5, T0 + 3 * HOUR_S + 10)
        assert list(last.times) == [T0 + HOUR_S * k for k in range(-2, 3)]
        assert np.isnan(last.values["disp_u_mm"][:2]).all() and list(last.completeness["rain_mm"][:2]) == [
            0,
            0,
        ]
        np.testing.assert_allclose(last.values["rain_mm"][2:], got.values["rain_mm"])


def test_retention_prunes_raw_samples_but_keeps_steps(tmp_path: Path) -> None:
    now = [T0 + 10 * DAY_S]
    cfg = _cfg(tmp_path, retention_days=5)
    with Store(cfg, clock=lambda: now[0]) as store:
        old = [Sample(T0 + 60.0 * k, "rain.mm", 0.2) for k in range(1, 100)]
        new = [Sample(T0 + 9 * DAY_S + k, "rain.mm", 0.2) for k in range(10)]
        store.put(old + new)
        store.flush()
        store.refresh_steps(DAY_S, T0, T0 + DAY_S)
        store.prune()
        store.flush()
        assert store.channels() == {"rain.mm": 10}
        assert store.stats["pruned"] == 99
        steps = store.read_steps(DAY_S, T0, T0 + DAY_S)
        assert steps.values["rain_mm"][0] == pytest.approx(99 * 0.2)


def test_replayed_old_data_is_not_pruned_by_wall_clock(tmp_path: Path) -> None:
    # Retention counts from min(now, newest sample): a replay of a year-old capture keeps its samples.
    with Store(_cfg(tmp_path, retention_days=5), clock=lambda: T0 + 365 * DAY_S) as store:
        store.put([Sample(T0 + k, "rain.mm", 0.0) for k in range(100)])
        store.flush()
        store.prune()
        store.flush()
        assert store.channels() == {"rain.mm": 100}


def test_schema_version_newer_than_agent_is_refused(tmp_path: Path) -> None:
    Store(_cfg(tmp_path)).close()
    with sqlite3.connect(tmp_path / "store.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="schema version") as info:
        Store(_cfg(tmp_path))
    assert "upgrade" in info.value.fix


@pytest.mark.faults
def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite").write_bytes(b"this is not sqlite" * 400)
    with pytest.raises(StoreError, match="cannot be opened") as info:
        Store(_cfg(tmp_path))
    assert "move it aside" in info.value.fix


@pytest.mark.faults
def test_corrupt_page_is_found_at_open(tmp_path: Path) -> None:
    with Store(_cfg(tmp_path, wal=False)) as store:
        store.put([Sample(T0 + k, "gnss.e_mm", float(k)) for k in range(20000)])
        store.flush()
    path = tmp_path / "store.sqlite"
    data = bytearray(path.read_bytes())
    page = 4096
    data[10 * page + 100 : 10 * page + 900] = b"\xff" * 800  # scribble over an index/table page
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"integrity|malformed|cannot be opened"):
        Store(_cfg(tmp_path, wal=False))


@pytest.mark.faults
def test_disk_full_keeps_committed_data_and_backlog_until_room(tmp_path: Path) -> None:
    now = [T0 + 10 * DAY_S]
    cfg = _cfg(tmp_path, max_size_mb=0.5, retention_days=5, batch_max=500)
    store = Store(cfg, clock=lambda: now[0])
    try:
        old = [Sample(T0 + k, "gnss.e_mm", float(k)) for k in range(8000)]
        store.put(old)
        store.flush()
        store.put([Sample(T0 + 9 * DAY_S, "rain.mm", 1.0)])
        store.flush()
        before = store.channels()
        # Now more than fits in 0.5 MiB (about 34 bytes a sample with its index): the disk "fills".
        backlog = [Sample(T0 + 9 * DAY_S + k, "gnss.n_mm", float(k)) for k in range(8000)]
        store.put(backlog)
        with pytest.raises(StoreError, match="full") as info:
            store.flush(timeout=10)
        assert "retention" in info.value.fix
        assert store.stats["write_errors"] >= 1
        # What was committed before is intact and readable, from this and from another connection.
        assert store.channels()["gnss.e_mm"] == before["gnss.e_mm"] == 8000
        with sqlite3.connect(cfg.path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 8001
        # Retention frees the old samples; the backlog is then committed, nothing lost.
        store.prune()
        store.flush(timeout=20)
        assert store.channels() == {"gnss.e_mm": 0, "rain.mm": 1, "gnss.n_mm": 8000}
        assert store.stats["dropped.backlog_full"] == 0
    finally:
        store.close()


def test_fast_producer_waits_for_a_healthy_writer_instead_of_dropping(tmp_path: Path) -> None:
    with Store(_cfg(tmp_path, max_backlog=1000, batch_max=500)) as store:
        for k in range(0, 50_000, 500):
            assert store.put([Sample(T0 + k + j, "rain.mm", 0.1) for j in range(500)], wait_s=None) == 500
        store.flush()
        assert store.stats["committed"] == 50_000 and store.stats["dropped.backlog_full"] == 0


@pytest.mark.faults
def test_backlog_bound_drops_are_counted(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, max_size_mb=0.1, max_backlog=25_000)
    with Store(cfg) as store:
        assert store.put([Sample(T0 + k, "gnss.e_mm", 0.0) for k in range(20_000)]) == 20_000
        with pytest.raises(StoreError, match="full"):
            store.flush(timeout=5)  # 20000 samples do not fit in 0.1 MiB: held as backlog
        assert store.put([Sample(T0 + 30_000 + k, "gnss.e_mm", 0.0) for k in range(10_000)]) == 0
        assert store.put([Sample(T0 + 50_000 + k, "gnss.e_mm", 0.0) for k in range(3_000)]) == 3_000
        assert store.stats["dropped.backlog_full"] == 10_000
        assert store.stats["accepted"] == 23_000
