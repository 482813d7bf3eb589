"""The durable outbox on real SQLite files: order, ack, bounds, coalescing, disk full, corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import pytest

from agent.errors import OutboxError
from agent.publish.outbox import OutboundMessage, Outbox


def msg(
    i: int, priority: int = 2, droppable: bool = True, coalesce: str | None = None, size: int = 10
) -> OutboundMessage:
    return OutboundMessage(
        topic=f"lews/v1/s/n/t{priority}",
        payload=(b"%06d" % i) + b"x" * size,
        qos=1,
        retain=False,
        priority=priority,
        droppable=droppable,
        msg_id=f"id{i:08d}",
        coalesce_key=coalesce,
    )


def test_priority_then_fifo_and_ack_deletes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.enqueue_many([msg(1, 2), msg(2, 0, False), msg(3, 2), msg(4, 1, False), msg(5, 0, False)])
        order = [s.message.msg_id for s in ob.next_batch(10)]
        assert order == ["id00000002", "id00000005", "id00000004", "id00000001", "id00000003"]
        first = ob.next_batch(2)
        assert [s.message.msg_id for s in ob.next_batch(2, exclude=[s.id for s in first])] == [
            "id00000004",
            "id00000001",
        ]
        assert ob.ack([s.id for s in first]) == 2
        assert ob.depth == 3
        assert ob.ack([first[0].id]) == 0  # a second ack of the same row is harmless
        st = ob.stats()
        assert st["depth"] == 3 and st["acked"] == 2 and st["enqueued"] == 5
        assert st["depth_by_priority"] == {"1": 1, "2": 2}


def test_reopen_keeps_unacked_in_order(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as ob:
        ids = ob.enqueue_many([msg(i) for i in range(20)])
        ob.ack([i for i in ids[:5] if i is not None])
    with Outbox(path) as ob:
        assert ob.depth == 15
        assert [s.message.msg_id for s in ob.all_pending()] == [f"id{i:08d}" for i in range(5, 20)]
        assert ob.all_pending()[0].message.payload.startswith(b"000005")
        assert ob.stats()["oldest_age_s"] is not None


def test_wal_and_synchronous_modes(tmp_path: Path) -> None:
    modes: tuple[Literal["FULL"], Literal["NORMAL"]] = ("FULL", "NORMAL")
    for mode in modes:
        path = tmp_path / f"{mode}.sqlite"
        with Outbox(path, synchronous=mode) as ob:
            assert ob._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert ob._conn.execute("PRAGMA synchronous").fetchone()[0] == {"FULL": 2, "NORMAL": 1}[mode]
    with pytest.raises(OutboxError, match="synchronous"):
        Outbox(tmp_path / "x.sqlite", synchronous="OFF")  # type: ignore[arg-type]


def test_bound_drops_oldest_telemetry_never_alerts(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite", max_messages=5) as ob:
        ob.enqueue_many([msg(i) for i in range(5)])  # 5 telemetry: full
        ob.enqueue(msg(100, 0, droppable=False))  # alert evicts the oldest telemetry
        pending = [s.message.msg_id for s in ob.all_pending()]
        assert "id00000000" not in pending and "id00000100" in pending
        assert ob.dropped["evicted_full"] == 1
        # fill the rest with alerts: every telemetry is evicted, no alert ever is
        for i in range(101, 112):
            assert ob.enqueue(msg(i, 0, droppable=False)) is not None
        kept = ob.all_pending()
        assert all(s.message.priority == 0 for s in kept)
        assert len(kept) == 12  # over the bound: alerts are kept
        assert ob.dropped["evicted_full"] == 5
        assert ob.stats()["over_limit_undroppable"] > 0
        # telemetry with nothing droppable to evict is refused and counted
        assert ob.enqueue(msg(200)) is None
        assert ob.dropped["refused_full"] == 1
        assert ob.stats()["dropped"] == {"evicted_full": 5, "refused_full": 1}


def test_coalesce_keeps_only_latest_unsent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.enqueue(msg(1, 1, False, coalesce="riskmap"))
        ob.enqueue(msg(2, 2))
        ob.enqueue(msg(3, 1, False, coalesce="riskmap"))
        assert [s.message.msg_id for s in ob.all_pending()] == ["id00000003", "id00000002"]
        assert ob.stats()["coalesced"] == 1


def test_disk_full_raises_and_keeps_everything_accepted(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    accepted: list[str] = []
    with Outbox(path, hard_limit_bytes=256 * 1024) as ob:
        with pytest.raises(OutboxError, match="could not store") as err:
            for i in range(10_000):
                m = msg(i, 0, droppable=False, size=2000)
                ob.enqueue(m)
                accepted.append(m.msg_id)
        assert "free disk space" in err.value.fix
        assert len(accepted) > 20
        # a batch that does not fit is refused as a whole
        with pytest.raises(OutboxError):
            ob.enqueue_many([msg(90_000 + i, 0, False, size=2000) for i in range(50)])
        assert ob.depth == len(accepted)
        # acking frees room again
        ob.ack([s.id for s in ob.next_batch(10)])
        assert ob.enqueue(msg(99_999, 0, False, size=100)) is not None
    with Outbox(path) as ob:
        ids = [s.message.msg_id for s in ob.all_pending()]
        assert ids == [*accepted[10:], "id00099999"]


def test_meta_written_with_messages(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as ob:
        ob.enqueue_many([msg(1, 0, False)], meta={"cap_refs:a1": "s,i,t"})
        assert ob.get_meta("cap_refs:a1") == "s,i,t"
        ob.enqueue_many([msg(2, 0, False)], meta={"cap_refs:a1": None})
        assert ob.get_meta("cap_refs:a1") is None


def test_corrupt_or_unwritable_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot be opened") as err:
        Outbox(bad)
    assert "move it aside" in err.value.fix
    (tmp_path / "plain-file").write_text("x")
    with pytest.raises(OutboxError, match="cannot be opened"):
        Outbox(tmp_path / "plain-file" / "o.sqlite")
    with pytest.raises(OutboxError, match="max_messages"):
        Outbox(tmp_path / "ok.sqlite", max_messages=0)


def test_outbox_file_is_plain_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as ob:
        ob.enqueue(msg(7, 0, False))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT msg_id, priority FROM outbox").fetchall() == [("id00000007", 0)]
    conn.close()
