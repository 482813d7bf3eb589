"""The durable outbox: every outgoing MQTT message is committed to SQLite before it is sent and deleted
only when the broker acknowledged it (QoS 1 PUBACK).

SQLite in WAL mode with ``synchronous=FULL`` by default: a commit is fsync'ed before ``enqueue``
returns, so an accepted message survives kill -9 and power loss. Messages leave in (priority, id)
order: alerts and the wire alarm (0) before forecasts (1) before telemetry (2), first-in-first-out
within a priority. Size is bounded by ``max_messages``: when full, the oldest droppable (telemetry)
message makes room; a droppable message with nothing to evict is refused; alerts are never dropped
(they may exceed the bound; only the disk limits them). Every drop is counted by reason.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.errors import OutboxError

log = logging.getLogger(__name__)

SyncMode = Literal["FULL", "NORMAL", "EXTRA"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    droppable INTEGER NOT NULL,
    coalesce_key TEXT,
    msg_id TEXT NOT NULL,
    content_type TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, id);
CREATE INDEX IF NOT EXISTS outbox_coalesce ON outbox (coalesce_key) WHERE coalesce_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "id, priority, topic, payload, qos, retain, droppable, coalesce_key, msg_id, content_type, created"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One message to publish. ``created`` is epoch seconds at enqueue (set by the outbox when 0)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: int
    droppable: bool
    msg_id: str
    content_type: str = "application/json"
    coalesce_key: str | None = None
    created: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    message: OutboundMessage


class Outbox:
    """Thread-safe durable FIFO-per-priority queue of outgoing messages (one SQLite file)."""

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: SyncMode = "FULL",
        max_messages: int = 100_000,
        hard_limit_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise OutboxError(f"outbox synchronous mode {synchronous!r} is unknown", fix="use FULL or NORMAL")
        if max_messages < 1:
            raise OutboxError(f"outbox max_messages {max_messages} < 1", fix="set max_messages to at least 1")
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_messages = max_messages
        self._clock = clock
        self._lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._conn = self._open(hard_limit_bytes)
        self._depth = int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        if self._depth:
            log.info("outbox %s reopened with %d unsent message(s)", self.path, self._depth)

    # --- lifecycle --------------------------------------------------------------------------------
    def _open(self, hard_limit_bytes: int | None) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {ok}")
            conn.executescript(_SCHEMA)
            if hard_limit_bytes is not None:
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                conn.execute(f"PRAGMA max_page_count={max(1, hard_limit_bytes // page)}")
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(
                f"outbox database {self.path} cannot be opened: {exc}",
                fix="check the directory exists and is writable by the agent and the disk is not full; "
                "if the file is corrupt, move it aside (its unsent messages are then lost) and restart",
            ) from exc
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- writing ------------------------------------------------------------------------------------
    def enqueue(self, message: OutboundMessage) -> int | None:
        """Commit one message; returns its id, or None when it was refused (counted in ``dropped``)."""
        ids = self.enqueue_many([message])
        return ids[0]

    def enqueue_many(
        self, messages: Iterable[OutboundMessage], meta: dict[str, str | None] | None = None
    ) -> list[int | None]:
        """Commit several messages (and optional ``meta`` key/values, e.g. CAP references; None deletes
        a key) in one transaction (one fsync). Raises OutboxError, storing none of them, when the
        database cannot be written (disk full, I/O error)."""
        msgs = list(messages)
        now = self._clock()
        with self._lock:
            depth = self._depth
            ids: list[int | None] = []
            local_drops: Counter[str] = Counter()
            coalesced = 0
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for msg in msgs:
                    if msg.coalesce_key is not None:
                        cur = self._conn.execute(
                            "DELETE FROM outbox WHERE coalesce_key = ?", (msg.coalesce_key,)
                        )
                        coalesced += cur.rowcount
                        depth -= cur.rowcount
                    if depth >= self.max_messages:
                        cur = self._conn.execute(
                            "DELETE FROM outbox WHERE id = (SELECT id FROM outbox WHERE droppable = 1 "
                            "ORDER BY priority DESC, id LIMIT 1)"
                        )
                        if cur.rowcount:
                            local_drops["evicted_full"] += 1
                            depth -= 1
                        elif msg.droppable:
                            local_drops["refused_full"] += 1
                            ids.append(None)
                            continue
                    cur = self._conn.execute(
                        f"INSERT INTO outbox ({_COLUMNS}) VALUES (NULL,?,?,?,?,?,?,?,?,?,?)",
                        (
                            msg.priority,
                            msg.topic,
                            msg.payload,
                            msg.qos,
                            int(msg.retain),
                            int(msg.droppable),
                            msg.coalesce_key,
                            msg.msg_id,
                            msg.content_type,
                            msg.created or now,
                        ),
                    )
                    ids.append(cur.lastrowid)
                    depth += 1
                for key, value in (meta or {}).items():
                    if value is None:
                        self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                    else:
                        self._conn.execute(
                            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
                        )
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(
                    f"outbox {self.path} could not store {len(msgs)} message(s): {exc}",
                    fix="free disk space on the outbox's filesystem (or raise outbox.hard_limit_mb); "
                    "messages stored before are kept and will still be sent",
                ) from exc
            self._depth = depth
            self.counters["enqueued"] += sum(1 for i in ids if i is not None)
            self.counters["coalesced"] += coalesced
            self.dropped.update(local_drops)
            if depth > self.max_messages:
                self.counters["over_limit_undroppable"] += 1
        for reason, n in local_drops.items():
            if n:
                log.warning("outbox full (%d messages): %d message(s) %s", self.max_messages, n, reason)
        return ids

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback after failed outbox write had nothing to undo")

    def ack(self, ids: Iterable[int]) -> int:
        """Delete acknowledged messages (one transaction); returns how many rows were deleted."""
        id_list = list(ids)
        if not id_list:
            return 0
        with self._lock:
            relaxed = self.synchronous != "NORMAL"
            try:
                # a lost delete only re-sends a message (same msg_id): no fsync of its own; the next
                # FULL commit (any enqueue) makes it durable with the WAL
                if relaxed:
                    self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("BEGIN IMMEDIATE")
                deleted = 0
                for start in range(0, len(id_list), 500):
                    chunk = id_list[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    deleted += self._conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(
                    f"outbox {self.path} could not delete acknowledged messages: {exc}",
                    fix="free disk space; the messages will be re-sent (duplicates carry the same msg_id)",
                ) from exc
            finally:
                if relaxed:
                    self._conn.execute(f"PRAGMA synchronous={self.synchronous}")
            self._depth -= deleted
            self.counters["acked"] += deleted
            return deleted

    # --- reading ------------------------------------------------------------------------------------
    def next_batch(self, limit: int, exclude: Iterable[int] = ()) -> list[StoredMessage]:
        """Up to ``limit`` unsent messages in send order, skipping ids already in flight."""
        skip = list(exclude)
        sql = f"SELECT {_COLUMNS} FROM outbox"
        if skip:
            sql += f" WHERE id NOT IN ({','.join('?' * len(skip))})"
        sql += " ORDER BY priority, id LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*skip, limit)).fetchall()
        return [_row(r) for r in rows]

    def all_pending(self) -> list[StoredMessage]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY priority, id").fetchall()
        return [_row(r) for r in rows]

    def queued(self, msg_id: str) -> bool:
        """Whether a message with ``msg_id`` is still waiting to be sent (or acknowledged)."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM outbox WHERE msg_id = ? LIMIT 1", (msg_id,)).fetchone()
        return row is not None

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @property
    def depth(self) -> int:
        return self._depth

    def note_sent(self, n: int = 1) -> None:
        with self._lock:
            self.counters["sent"] += n

    def stats(self) -> dict[str, Any]:
        """Counters for status / metrics: depth, oldest age, per-priority depth, sent, acked, drops."""
        with self._lock:
            oldest = self._conn.execute("SELECT MIN(created) FROM outbox").fetchone()[0]
            by_prio = dict(
                self._conn.execute("SELECT priority, COUNT(*) FROM outbox GROUP BY priority").fetchall()
            )
            counters = dict(self.counters)
            dropped = dict(self.dropped)
        return {
            "depth": self._depth,
            "depth_by_priority": {str(k): int(v) for k, v in sorted(by_prio.items())},
            "oldest_age_s": None if oldest is None else round(max(0.0, self._clock() - float(oldest)), 3),
            "enqueued": counters.get("enqueued", 0),
            "sent": counters.get("sent", 0),
            "acked": counters.get("acked", 0),
            "coalesced": counters.get("coalesced", 0),
            "over_limit_undroppable": counters.get("over_limit_undroppable", 0),
            "dropped": {k: v for k, v in dropped.items() if v},
            "synchronous": self.synchronous,
        }


def _row(r: tuple[Any, ...]) -> StoredMessage:
    return StoredMessage(
        id=int(r[0]),
        message=OutboundMessage(
            priority=int(r[1]),
            topic=str(r[2]),
            payload=bytes(r[3]),
            qos=int(r[4]),
            retain=bool(r[5]),
            droppable=bool(r[6]),
            coalesce_key=r[7],
            msg_id=str(r[8]),
            content_type=str(r[9]),
            created=float(r[10]),
        ),
    )
