"""Seen command nonces, persistent across restarts (SQLite beside the outbox), pruned by age.

A nonce is recorded, durably (committed with ``synchronous=FULL`` before the command runs), the
first time a command carrying it is accepted. Entries whose signed ``ts`` is older than ``keep_s``
(twice the freshness window) are pruned, at most ``max_rows`` are kept per key; what is pruned
raises that key's *floor*: a command signed at or before its key's floor is refused as a replay
too, since its nonce may have been pruned. So pruning never re-opens a replay, whatever the clock
does (the floor is in signer time, not gateway time).

Thread safety: one lock; the MQTT network thread is the only caller in the daemon.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from agent.errors import PublishError

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_ts ON nonces (key_id, ts);
CREATE TABLE IF NOT EXISTS floors (key_id TEXT PRIMARY KEY, floor_ts REAL NOT NULL);
"""


class NonceStore:
    """``seen(key, nonce, ts)`` -> why it is a replay, or None; ``record(...)`` commits it."""

    def __init__(self, path: Path | None, *, keep_s: float, max_rows: int = 10_000) -> None:
        """``path`` None: in memory (tests, or commands disabled); else the SQLite file, created."""
        self.path, self.keep_s, self.max_rows = path, keep_s, max_rows
        self._lock = threading.Lock()
        target = ":memory:" if path is None else str(path)
        try:
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PublishError(
                f"command nonce store {target} cannot be opened: {exc}",
                fix="check that the state directory exists, is writable by the agent and has space",
            ) from exc

    def seen(self, key_id: str, nonce: str, ts: float) -> str | None:
        """Why (key, nonce, ts) is a replay, or None when it is new."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM nonces WHERE key_id = ? AND nonce = ?", (key_id, nonce)
            ).fetchone()
            if row is not None:
                return f"nonce already used by key {key_id}"
            floor = self._floor(key_id)
            if floor is not None and ts <= floor:
                return f"signed at or before key {key_id}'s pruned horizon (nonce no longer held)"
        return None

    def record(self, key_id: str, nonce: str, ts: float, now: float) -> bool:
        """Record an accepted nonce durably; False if it was there already (a race: a replay)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO nonces (key_id, nonce, ts) VALUES (?, ?, ?)", (key_id, nonce, ts)
            )
            added = cur.rowcount == 1
            self._prune(key_id, now)
        return added

    def _floor(self, key_id: str) -> float | None:
        row = self._db.execute("SELECT floor_ts FROM floors WHERE key_id = ?", (key_id,)).fetchone()
        return None if row is None else float(row[0])

    def _prune(self, key_id: str, now: float) -> None:
        """Drop entries older than keep_s and beyond max_rows; raise the floor to what was dropped."""
        horizon = now - self.keep_s
        (count,) = self._db.execute("SELECT COUNT(*) FROM nonces WHERE key_id = ?", (key_id,)).fetchone()
        excess = max(0, int(count) - self.max_rows)
        cutoff = horizon
        if excess:
            (nth,) = self._db.execute(
                "SELECT ts FROM nonces WHERE key_id = ? ORDER BY ts LIMIT 1 OFFSET ?", (key_id, excess - 1)
            ).fetchone()
            cutoff = max(cutoff, float(nth))
        (dropped_max,) = self._db.execute(
            "SELECT MAX(ts) FROM nonces WHERE key_id = ? AND ts <= ?", (key_id, cutoff)
        ).fetchone()
        if dropped_max is None:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM nonces WHERE key_id = ? AND ts <= ?", (key_id, cutoff))
            self._db.execute(
                "INSERT INTO floors (key_id, floor_ts) VALUES (?, ?) "
                "ON CONFLICT(key_id) DO UPDATE SET floor_ts = MAX(floor_ts, excluded.floor_ts)",
                (key_id, float(dropped_max)),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise

    def held(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM nonces").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
