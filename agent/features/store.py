"""SQLite time-series store: raw samples, derived steps and device/port counters.

One writer thread owns the write connection and commits batches (started by ``start()`` or by the
first write, never by the constructor, so a failure after construction leaks no thread); any thread
may read (each gets its own read-only connection, WAL lets readers and the writer run side by side).
A batch the disk refuses (full, I/O error, corrupt page) stays in memory, bounded by ``max_backlog``,
and is retried; ``flush()`` raises :class:`StoreError` while it cannot be committed. What was
committed before stays readable.
See docs/store-and-pipeline.md for the schema and the durability argument.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import StoreError
from agent.features.aggregate import (
    Expectations,
    StepTable,
    aggregate,
    align_steps,
    step_rows,
    step_start,
    steps_from_rows,
)
from agent.features.samples import CHANNEL_AGGREGATES, Sample
from agent.features.settings import StoreConfig
from agent.features.store_db import (
    delete_before,
    error_class,
    insert_rows,
    open_reader,
    open_store_db,
    sample_rows,
    write_error,
)
from agent.features.store_queue import WriteQueue

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
RETRY_S = (0.2, 5.0)  # first and longest wait before retrying a refused batch


class Store:
    """The time-series store. Use as a context manager or call ``close()``."""

    def __init__(self, cfg: StoreConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.path = Path(cfg.path)
        self._clock = clock
        self._cond = threading.Condition()
        self._queue = WriteQueue()  # agent/features/store_queue.py: committed items leave by identity
        self._errors = 0
        self.last_error: StoreError | None = None
        self.stats: Counter[str] = Counter()  # accepted, committed, batches, write_errors, dropped.<reason>
        self._newest_t = -math.inf
        self._stop = False
        self._retry_now = False
        self._failing = False  # the last write was refused (cleared by the next commit)
        self._dropping = False  # inside a burst of backlog drops (for logging once)
        self._local = threading.local()
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._channel_ids: dict[str, int] = {}
        self._wconn = self._open_writer()
        # The retention counts back from the newest sample kept, also after a reopen (a replayed or
        # demo store must not be pruned against the wall clock by its first write).
        newest = self._wconn.execute("SELECT MAX(t) FROM samples").fetchone()[0]
        if newest is not None:
            self._newest_t = float(newest)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self.closed = False

    def start(self) -> Store:
        """Start the writer thread (idempotent; the first write starts it too)."""
        with self._cond:
            if self._thread.ident is None and not self._stop:
                self._thread.start()
        return self

    @property
    def writer_alive(self) -> bool:
        return self._thread.is_alive()

    # ---- opening and schema ---------------------------------------------------------------------
    def _open_writer(self) -> sqlite3.Connection:
        conn = open_store_db(self.path, self.cfg)
        for cid, name in conn.execute("SELECT id, name FROM channels"):
            self._channel_ids[name] = int(cid)
        return conn

    # ---- writing (any thread enqueues; the writer thread commits) ------------------------------
    def put(self, samples: Iterable[Sample], *, wait_s: float | None = 0.0) -> int:
        """Queue samples for writing; returns how many were accepted. Drops are counted by reason.

        When the backlog is full while the writer is healthy (only slower than the producer), wait up
        to ``wait_s`` (None: as long as it takes) for room. While the disk refuses writes, never wait:
        beyond ``max_backlog`` the samples are dropped and counted (``dropped.backlog_full``).
        """
        good: list[Sample] = []
        bad: Counter[str] = Counter()
        for s in samples:
            if s.channel not in CHANNEL_AGGREGATES:
                bad["dropped.unknown_channel"] += 1
            elif not (math.isfinite(s.value) and math.isfinite(s.t)):
                bad["dropped.non_finite"] += 1
            else:
                good.append(s)
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._cond:
            self.stats.update(bad)
            if not good:
                return 0
            while self._queue.samples + len(good) > self.cfg.max_backlog and self._queue.samples:
                left = math.inf if deadline is None else deadline - time.monotonic()
                if self._failing or left <= 0 or not self._thread.is_alive():
                    self.stats["dropped.backlog_full"] += len(good)
                    if not self._dropping:  # once per burst
                        log.warning(
                            "store backlog full (%d samples): dropping new samples", self._queue.samples
                        )
                    self._dropping = True
                    return 0
                self._cond.wait(min(left, 0.1))
            self._dropping = False
            self._enqueue("samples", good)
            self.stats["accepted"] += len(good)
        return len(good)

    def put_columns(self, channel: str, t: np.ndarray, value: np.ndarray) -> int:
        """Queue one channel's samples as arrays (a replay's bulk load); non-finite rows are dropped
        and counted as in :meth:`put`. Never waits: the caller holds every row."""
        t, value = np.asarray(t, dtype=np.float64), np.asarray(value, dtype=np.float64)
        if channel not in CHANNEL_AGGREGATES:
            with self._cond:
                self.stats["dropped.unknown_channel"] += len(t)
            return 0
        good = np.isfinite(t) & np.isfinite(value)
        n = int(good.sum())
        with self._cond:
            self.stats.update({"dropped.non_finite": len(t) - n} if n < len(t) else {})
            if n:
                self._enqueue("columns", (channel, t[good], value[good]))
                self.stats["accepted"] += n
        return n

    def put_steps(self, table: StepTable) -> None:
        rows = step_rows(table, self._clock())
        with self._cond:
            self._enqueue("steps", rows)

    def put_counters(self, scope: str, values: dict[str, int]) -> None:
        now = self._clock()
        rows = [(scope, k, int(v), now) for k, v in values.items()]
        with self._cond:
            self._enqueue("counters", rows)

    def prune(self) -> None:
        """Delete raw samples older than the retention (steps are kept) in the next transaction.

        It goes to the front of the queue: on a full disk it is what makes room for the backlog.
        """
        with self._cond:
            self._enqueue("prune", None, front=True)
            self._retry_now = True

    def _enqueue(self, kind: str, payload: Any, *, front: bool = False) -> None:
        if self._thread.ident is None and not self._stop:  # called with the lock held
            self._thread.start()
        self._queue.add(kind, payload, front=front)
        self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything queued so far is committed; StoreError if the disk refuses it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target, errors0 = self._queue.last_seq, self._errors
            self._retry_now = True
            self._cond.notify_all()
            while self._queue.pending_upto(target):
                if self._errors != errors0 and self.last_error is not None:
                    raise self.last_error
                if not self._thread.is_alive():
                    raise StoreError(f"store {self.path} writer is stopped", fix="reopen the store")
                left = deadline - time.monotonic()
                if left <= 0:
                    pending = self._queue.pending_upto(target)
                    raise StoreError(
                        f"store {self.path}: {pending} writes uncommitted after {timeout}s",
                        fix="check disk health and free space",
                    )
                self._cond.wait(min(left, 0.1))

    def _run(self) -> None:
        retry = RETRY_S[0]
        last_prune = -math.inf
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait(self.cfg.flush_interval_s)
                if self._stop and not self._queue:
                    return
                items = self._queue.batch(self.cfg.batch_max)
            batch = [(item.kind, item.payload) for item in items]
            if time.monotonic() - last_prune > PRUNE_EVERY_S:
                batch.append(("auto", None))
                last_prune = time.monotonic()
            try:
                delta = self._write(batch)
            except sqlite3.Error as exc:
                self._fail(exc, batch)
                until = time.monotonic() + retry
                with self._cond:
                    # Puts do not shorten the wait; a flush() or prune() does.
                    self._retry_now = False
                    while not (self._stop or self._retry_now) and time.monotonic() < until:
                        self._cond.wait(until - time.monotonic())
                    if self._stop:
                        return
                retry = min(RETRY_S[1], retry * 2)
                continue
            retry = RETRY_S[0]
            with self._cond:
                self._failing = False
                self._queue.committed(items)
                self.stats.update(delta)
                self.stats["batches"] += 1
                self._cond.notify_all()

    def _write(self, batch: list[tuple[str, Any]]) -> Counter[str]:
        """One transaction for the whole batch; returns the stats it adds once committed."""
        conn = self._wconn
        delta: Counter[str] = Counter()
        newest = self._newest_t
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Deletions first: they make room for the inserts of the same transaction.
            for kind, payload in sorted(batch, key=lambda item: item[0] not in ("prune", "auto")):
                if kind in ("prune", "auto"):
                    delta["pruned"] += self._prune(conn, newest)
                    continue
                n, t_max = insert_rows(conn, kind, payload, self._channel_id)
                delta["committed"] += n
                newest = max(newest, t_max)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._newest_t = newest
        return delta

    def _prune(self, conn: sqlite3.Connection, newest: float) -> int:
        """Delete raw samples older than the retention, counted from min(now, newest sample).

        The newest sample bounds the reference so a replay of old captures is not deleted at once and a
        bogus far-future timestamp cannot wipe the store.
        """
        ref = min(self._clock(), newest) if newest > -math.inf else self._clock()
        return delete_before(conn, ref - self.cfg.retention_days * 86400.0)

    def _channel_id(self, name: str) -> int:
        cid = self._channel_ids.get(name)
        if cid is None:
            cur = self._wconn.execute("INSERT OR IGNORE INTO channels(name) VALUES (?)", (name,))
            del cur
            cid = int(self._wconn.execute("SELECT id FROM channels WHERE name=?", (name,)).fetchone()[0])
            self._channel_ids[name] = cid
        return cid

    def _fail(self, exc: sqlite3.Error, batch: list[tuple[str, Any]]) -> None:
        # A rolled-back transaction may have created channel ids that no longer exist: forget them all.
        self._channel_ids = {}
        kind = error_class(exc)
        err = write_error(self.path, exc, len(batch))
        with self._cond:
            if self.last_error is None or str(self.last_error) != str(err):
                log.error("%s", err)
            self.last_error = err
            self._failing = True
            self._errors += 1
            self.stats["write_errors"] += 1
            self.stats[f"write_errors.{kind}"] += 1
            self._cond.notify_all()

    # ---- reading (any thread) -------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader(self.path)
            self._local.conn = conn
            with self._cond:
                # Close the connections of threads that have ended (a long-running daemon must not leak).
                alive = [(th, c) for th, c in self._readers if th.is_alive()]
                for th, c in self._readers:
                    if not th.is_alive():
                        c.close()
                self._readers = [*alive, (threading.current_thread(), conn)]
        return conn

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._reader().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"store {self.path}: read failed: {exc}", fix="check the store file") from exc

    def channels(self) -> dict[str, int]:
        """Channel name -> number of raw samples held."""
        rows = self._query(
            "SELECT c.name, COUNT(s.t) FROM channels c"
            " LEFT JOIN samples s ON s.channel_id = c.id GROUP BY c.name"
        )
        return {str(n): int(c) for n, c in rows}

    def read_samples(
        self, start: float, end: float, channels: Iterable[str] | None = None, *, with_prior: bool = False
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Channel -> (t, value) arrays for ``start <= t < end``; ``with_prior`` adds the one before."""
        ids = {str(n): int(i) for i, n in self._query("SELECT id, name FROM channels")}
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name in channels if channels is not None else sorted(ids):
            cid = ids.get(name)
            if cid is None:
                continue
            arr = sample_rows(self._query, cid, start, end, with_prior=with_prior)
            out[name] = (arr[:, 0].copy(), arr[:, 1].copy())
        return out

    def refresh_steps(
        self, step_s: int, start: float, end: float, expect: Expectations | None = None
    ) -> StepTable:
        """Recompute steps over [start, end) from the committed raw samples and queue them for storing."""
        lo, hi = step_start(start, step_s), step_start(end - 1e-9, step_s) + step_s
        table = aggregate(self.read_samples(lo, hi, with_prior=True), step_s, lo, hi, expect)
        if len(table):
            self.put_steps(table)
        return table

    def read_steps(self, step_s: int, start: float, end: float) -> StepTable:
        """Stored steps with ``start <= step start < end`` (all columns; NaN / 0 where a row is absent)."""
        rows = self._query(
            "SELECT start, col, value, count, completeness FROM steps"
            " WHERE step_s=? AND start>=? AND start<?",
            (step_s, start, end),
        )
        return steps_from_rows(step_s, rows)

    def last_steps(self, step_s: int, n: int, end: float) -> StepTable:
        """The ``n`` step slots ending before ``end`` (slots without a stored row are NaN, completeness 0)."""
        hi = step_start(end, step_s)
        lo = hi - n * step_s
        return align_steps(self.read_steps(step_s, lo, hi), lo + step_s * np.arange(n, dtype=np.float64))

    def stats_snapshot(self) -> dict[str, int]:
        """A copy of ``stats`` taken under the lock (safe from any thread)."""
        with self._cond:
            return dict(self.stats)

    def counters(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for scope, name, value in self._query("SELECT scope, name, value FROM counters"):
            out.setdefault(str(scope), {})[str(name)] = int(value)
        return out

    # ---- lifecycle ------------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued (as far as the disk allows), stop the writer, close connections."""
        try:
            if self._thread.is_alive():
                self.flush(timeout)
        except StoreError as exc:
            log.error("store closing with %d uncommitted samples: %s", self._queue.samples, exc)
            self.stats["dropped.closed_uncommitted"] += self._queue.samples
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        with self._cond:
            readers, self._readers = self._readers, []
        for _th, conn in readers:
            conn.close()
        self._wconn.close()
        self.closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
