"""The store's writer queue under concurrent put / prune / flush: every accepted sample is stored
exactly once and a prune is never lost (issue 13: a prune placed at the queue front while a write was
in flight made the writer pop the wrong items: 6 samples put, 9 rows stored, the prune lost)."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.features.samples import Sample
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.features.store_db import error_class

NOW = 1_763_800_000.0
DAY = 86400.0


class GatedStore(Store):
    """A Store whose first ``gated`` writes wait at a gate: a write held in flight, on demand."""

    def __init__(self, cfg: StoreConfig, gated: int) -> None:
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()
        self._gated = gated
        super().__init__(cfg, clock=lambda: NOW)

    def _write(self, batch: list[tuple[str, Any]]) -> Counter[str]:
        if self._gated > 0:
            self._gated -= 1
            self.entered.release()
            self.gate.wait(30)
        return super()._write(batch)


def _rows(path: Path) -> list[tuple[float, float]]:
    with sqlite3.connect(path) as conn:
        return [(float(t), float(v)) for t, v in conn.execute("SELECT t, value FROM samples")]


def _cfg(tmp_path: Path, name: str = "store.sqlite") -> StoreConfig:
    return StoreConfig(path=tmp_path / name, retention_days=1.0, flush_interval_s=0.01, batch_max=4)


def test_a_prune_queued_while_a_write_is_in_flight_loses_nothing_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    """The reproduction: 3 old samples + 3 new ones; a prune queued while the first write is held."""
    store = GatedStore(_cfg(tmp_path), gated=1)
    old = [Sample(NOW - 3 * DAY + i, "rain.mm", 1.0) for i in range(3)]
    new = [Sample(NOW - 10 + i, "rain.mm", 2.0) for i in range(3)]
    store.put(old)
    assert store.entered.acquire(timeout=10)  # the writer holds the first batch, in flight
    store.prune()  # goes to the queue front, ahead of the in-flight batch
    store.put(new)
    store.gate.set()
    store.flush(30)
    store.prune()  # and one more, not raced, to make sure the old rows go whatever the order
    store.flush(30)
    stats = store.stats_snapshot()
    store.close()
    rows = _rows(tmp_path / "store.sqlite")
    assert len(rows) == len(set(rows)) == 3, rows  # (the bug: 9 rows: one batch written twice)
    assert {t for t, _ in rows} == {s.t for s in new}
    assert stats["committed"] == 6 and stats["pruned"] == 3, stats


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.integers(1, 6), st.booleans()),
            st.tuples(st.just("prune"), st.just(0), st.just(False)),
            st.tuples(st.just("flush"), st.just(0), st.just(False)),
        ),
        min_size=1,
        max_size=25,
    ),
    st.integers(1, 3),
)
def test_property_concurrent_put_prune_flush_stores_each_sample_once(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[str, int, bool]], threads: int
) -> None:
    """Plans of puts (old or recent samples), prunes and flushes split over 1-3 threads racing a
    writer that commits batches of 4: rows == the recent samples accepted, once each; old ones are
    gone after a final prune."""
    tmp = tmp_path_factory.mktemp("q")
    store = Store(_cfg(tmp), clock=lambda: NOW)
    counter = iter(range(1_000_000))
    lock = threading.Lock()
    # the retention counts back from the newest sample: one recent sample first, so old ones are old
    recent: list[float] = [NOW - 200.0]
    store.put([Sample(recent[0], "rain.mm", 1.0)])

    def run(steps: list[tuple[str, int, bool]]) -> None:
        for op, n, old in steps:
            if op == "put":
                with lock:
                    ts = [(NOW - 3 * DAY if old else NOW - 100.0) + next(counter) * 1e-3 for _ in range(n)]
                    if not old:
                        recent.extend(ts)
                assert store.put([Sample(t, "rain.mm", 1.0) for t in ts], wait_s=None) == n
            elif op == "prune":
                store.prune()
            else:
                store.flush(30)

    parts = [plan[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=run, args=(p,)) for p in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    store.flush(30)  # a prune runs first in its transaction: what is queued with it is not covered
    store.prune()
    store.flush(30)
    stats = store.stats_snapshot()
    store.close()
    rows = _rows(tmp / "store.sqlite")
    assert len(rows) == len(set(rows)), "a sample was stored twice"
    assert sorted(t for t, _ in rows) == sorted(recent)
    n_put = 1 + sum(n for op, n, _ in plan if op == "put")
    assert stats.get("committed", 0) == n_put and stats.get("accepted", 0) == n_put, stats


def _real_error(setup: str, statement: str, path: str = ":memory:") -> sqlite3.Error:
    conn = sqlite3.connect(path)
    try:
        conn.executescript(setup)
        conn.executescript(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no error raised")


def test_sqlite_errors_are_classified_by_result_code_and_by_message_on_python_3_10(tmp_path: Path) -> None:
    full = _real_error(
        "PRAGMA max_page_count=2; CREATE TABLE t(x)",
        "INSERT INTO t VALUES (zeroblob(4000)); INSERT INTO t VALUES (zeroblob(4000))",
    )
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    notadb = _real_error("", "SELECT * FROM sqlite_master", str(junk))
    assert error_class(full) == "full"
    assert error_class(notadb) == "corrupt"
    if hasattr(full, "sqlite_errorcode"):  # 3.11+: the code decides, not the words
        reworded = sqlite3.OperationalError("something else entirely")
        reworded.sqlite_errorcode = 13
        assert error_class(reworded) == "full"
    # Python 3.10: no sqlite_errorcode; SQLite's own message words decide
    for exc, kind in ((full, "full"), (notadb, "corrupt")):
        bare = sqlite3.OperationalError(str(exc))
        assert not hasattr(bare, "sqlite_errorcode")
        assert error_class(bare) == kind
    assert error_class(sqlite3.OperationalError("no such table: x")) == "other"
