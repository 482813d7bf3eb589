"""The durable outbox: depth and age of the oldest message, read from its SQLite file opened read-only
(safe while the daemon writes it: WAL readers never block the writer)."""

from __future__ import annotations

import sqlite3
from typing import Any

from agent.diagnose.model import Context, Result, failed, fmt_age, passed, warned

DEPTH_WARN_FRACTION = 0.5  # of mqtt.outbox.max_messages
OLDEST_WARN_S = 600.0  # an undelivered message older than this: the link is not draining
OLDEST_FAIL_S = 3600.0


def _read(ctx: Context) -> dict[str, Any]:
    path = ctx.cfg.mqtt.outbox.path
    if not path.is_file():
        return {"exists": False, "depth": 0, "oldest": None}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        depth, oldest = conn.execute("SELECT COUNT(*), MIN(created) FROM outbox").fetchone()
    finally:
        conn.close()
    return {"exists": True, "depth": int(depth), "oldest": None if oldest is None else float(oldest)}


def read_outbox(ctx: Context) -> dict[str, Any]:
    return ctx.memo("outbox", lambda: _read(ctx))


def depth(ctx: Context) -> Result:
    name = "outbox.depth"
    limit = ctx.cfg.mqtt.outbox.max_messages
    try:
        ob = read_outbox(ctx)
    except sqlite3.Error as exc:
        return failed(
            name,
            f"{ctx.cfg.mqtt.outbox.path} unreadable: {exc}",
            "stop the agent, move the file aside (unsent messages are lost), restart",
        )
    if not ob["exists"]:
        return passed(name, "no outbox yet (nothing queued)")
    n = int(ob["depth"])
    text = f"{n} queued (max {limit})"
    if n >= limit:
        return failed(
            name,
            f"{text}: full, telemetry is being dropped",
            "restore the broker link (see broker.*); for planned outages raise mqtt.outbox.max_messages",
        )
    if n >= DEPTH_WARN_FRACTION * limit:
        return warned(name, text, "the broker link is not keeping up: see broker.*")
    return passed(name, text)


def oldest(ctx: Context) -> Result:
    name = "outbox.oldest"
    try:
        ob = read_outbox(ctx)
    except sqlite3.Error:
        return failed(name, "outbox unreadable", "see outbox.depth")
    if ob["oldest"] is None:
        return passed(name, "empty")
    age = max(0.0, ctx.clock() - float(ob["oldest"]))
    text = f"oldest message waits {fmt_age(age)}"
    if age > OLDEST_FAIL_S:
        return failed(name, text, "messages are not delivered: check broker.* and the daemon's log")
    if age > OLDEST_WARN_S:
        return warned(name, text, "delivery is slow: check the broker link")
    return passed(name, text)
