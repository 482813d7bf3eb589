"""The store's SQLite file: schema as data (migrations), opening with the configured pragmas, checks."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import StoreError
from agent.features.settings import StoreConfig

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# user_version -> statements that bring the file to user_version + 1. Data, applied in order.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: (
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE channels(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)",
        # Not unique on (channel, t): frames read in one chunk share a receive time, and two RAIN
        # frames in one chunk are two amounts of rain, not a duplicate.
        "CREATE TABLE samples(channel_id INTEGER NOT NULL REFERENCES channels(id), t REAL NOT NULL,"
        " value REAL NOT NULL)",
        "CREATE INDEX samples_by_channel_time ON samples(channel_id, t)",
        "CREATE TABLE steps(step_s INTEGER NOT NULL, start REAL NOT NULL, col TEXT NOT NULL, value REAL,"
        " count INTEGER NOT NULL, completeness REAL NOT NULL, updated REAL NOT NULL,"
        " PRIMARY KEY(step_s, col, start)) WITHOUT ROWID",
        "CREATE TABLE counters(scope TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,"
        " updated REAL NOT NULL, PRIMARY KEY(scope, name)) WITHOUT ROWID",
    ),
}


# SQLite primary result codes (https://sqlite.org/rescode.html) -> the class of a write failure.
ERROR_CLASSES: dict[int, str] = {
    13: "full",  # SQLITE_FULL (also max_page_count reached)
    11: "corrupt",  # SQLITE_CORRUPT
    26: "corrupt",  # SQLITE_NOTADB
    10: "io",  # SQLITE_IOERR (extended codes: SQLITE_IOERR_WRITE, _FSYNC, ...)
    8: "readonly",  # SQLITE_READONLY
    14: "io",  # SQLITE_CANTOPEN
    5: "busy",  # SQLITE_BUSY
    6: "busy",  # SQLITE_LOCKED
}
# Python 3.10 has no ``sqlite_errorcode``: the message text, as SQLite words it, is all there is.
MESSAGE_CLASSES: tuple[tuple[str, str], ...] = (
    ("database or disk is full", "full"),
    ("malformed", "corrupt"),
    ("not a database", "corrupt"),
    ("disk i/o error", "io"),
    ("unable to open", "io"),
    ("readonly", "readonly"),
    ("locked", "busy"),
)
ERROR_FIXES: dict[str, str] = {
    "full": "free disk space, lower store.retention_days or raise store.max_size_mb; "
    "queued samples are kept and retried",
    "corrupt": "the file is corrupt: stop the agent and move it aside; committed data may be recoverable",
    "io": "the disk reports I/O errors: check it (dmesg, SMART); queued samples are kept and retried",
    "readonly": "the store file or its folder is read-only: check the mount and the permissions",
    "busy": "another process holds the store: only one agent may use a state directory",
    "other": "check the disk and the permissions of the store file",
}


def error_class(exc: sqlite3.Error) -> str:
    """full / corrupt / io / readonly / busy / other, from the SQLite result code where Python
    exposes it (3.11+: ``sqlite_errorcode``), else from the message."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return ERROR_CLASSES.get(code & 0xFF, "other")
    text = str(exc).lower()
    return next((cls for needle, cls in MESSAGE_CLASSES if needle in text), "other")


def connect_error(path: Path, exc: Exception) -> StoreError:
    return StoreError(
        f"store {path} cannot be opened: {exc}",
        fix="check the directory exists and is writable; if the file is corrupt, move it aside "
        "(the agent starts a new store; steps can be rebuilt by `agent replay` of the captures)",
    )


def write_error(path: Path, exc: sqlite3.Error, items: int) -> StoreError:
    """A refused write transaction, classified by its SQLite result code, with the fix that calls for."""
    kind = error_class(exc)
    return StoreError(f"store {path}: write of {items} items refused ({kind}): {exc}", fix=ERROR_FIXES[kind])


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection (one per reading thread; WAL readers never block the writer)."""
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
    except sqlite3.Error as exc:
        raise connect_error(path, exc) from exc


def sample_rows(
    query: Callable[[str, Sequence[Any]], list[Any]], cid: int, start: float, end: float, *, with_prior: bool
) -> np.ndarray:
    """(n, 2) float64 array of (t, value) of one channel with ``start <= t < end``, in time order;
    ``with_prior`` puts the last sample before ``start`` first (the state a stateful channel had)."""
    rows = query(
        "SELECT t, value FROM samples WHERE channel_id=? AND t>=? AND t<? ORDER BY t", (cid, start, end)
    )
    if with_prior:
        prior = "SELECT t, value FROM samples WHERE channel_id=? AND t<? ORDER BY t DESC LIMIT 1"
        rows = query(prior, (cid, start)) + rows
    return np.asarray(rows, dtype=np.float64).reshape(-1, 2)


ROWS_PER_INSERT = 100  # the channel id binds as a float; the INTEGER column's affinity stores an integer
_MULTI_INSERT = "INSERT INTO samples VALUES " + ", ".join(["(?, ?, ?)"] * ROWS_PER_INSERT)


def insert_rows(
    conn: sqlite3.Connection, kind: str, payload: Any, channel_id: Callable[[str], int]
) -> tuple[int, float]:
    """Insert one queued write (``samples``: Sample objects; ``columns``: (channel, t, value) arrays;
    ``steps`` / ``counters``: table rows); returns (raw samples inserted, newest sample time)."""
    if kind == "samples":
        conn.executemany(
            "INSERT INTO samples VALUES (?, ?, ?)", [(channel_id(s.channel), s.t, s.value) for s in payload]
        )
        return len(payload), max(s.t for s in payload)
    if kind == "columns":  # ROWS_PER_INSERT rows per statement: a third of the binding overhead
        name, t, value = payload
        flat = np.column_stack((np.full(len(t), channel_id(name), dtype=np.float64), t, value))
        whole = len(t) - len(t) % ROWS_PER_INSERT
        conn.executemany(_MULTI_INSERT, flat[:whole].reshape(-1, 3 * ROWS_PER_INSERT).tolist())
        conn.executemany("INSERT INTO samples VALUES (?, ?, ?)", flat[whole:].tolist())
        return len(t), float(t.max())
    if kind == "steps":
        conn.executemany("INSERT OR REPLACE INTO steps VALUES (?, ?, ?, ?, ?, ?, ?)", payload)
    elif kind == "counters":
        conn.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?, ?, ?)", payload)
    return 0, -math.inf


def delete_before(conn: sqlite3.Connection, cutoff: float) -> int:
    """Delete the raw samples older than ``cutoff`` (inside the caller's transaction); how many."""
    n = int(conn.execute("DELETE FROM samples WHERE t < ?", (cutoff,)).rowcount)
    if n:
        log.info("store: pruned %d raw samples older than %s", n, cutoff)
    return n


def open_store_db(path: Path, cfg: StoreConfig) -> sqlite3.Connection:
    """The writer connection: WAL / synchronous / size cap from ``cfg``, migrated, integrity-checked."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except (sqlite3.Error, OSError) as exc:
        raise connect_error(path, exc) from exc
    try:
        conn.execute("PRAGMA journal_mode=" + ("WAL" if cfg.wal else "DELETE")).fetchone()
        conn.execute(f"PRAGMA synchronous={cfg.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        if cfg.max_size_mb is not None:
            page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            pages = max(16, int(cfg.max_size_mb * 1024 * 1024 // page))
            conn.execute(f"PRAGMA max_page_count={pages}")
        migrate(conn, path)
    except (sqlite3.Error, OSError, StoreError) as exc:
        conn.close()
        if isinstance(exc, StoreError):
            raise
        raise connect_error(path, exc) from exc
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {path} has schema version {version}, this agent knows up to {SCHEMA_VERSION}",
            fix="upgrade the agent, or point store.path at a new file",
        )
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        for stmt in MIGRATIONS[version]:
            conn.execute(stmt)
        version += 1
        conn.execute(f"PRAGMA user_version={version}")
        conn.execute("COMMIT")
        log.info("store %s migrated to schema version %d", path, version)
    integrity = conn.execute("PRAGMA quick_check").fetchone()[0]
    if integrity != "ok":
        raise StoreError(
            f"store {path} failed its integrity check: {integrity}",
            fix="move the file aside; the agent starts a new store",
        )
