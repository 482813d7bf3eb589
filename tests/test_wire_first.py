"""The wire alarm goes to the broker before its outbox commit, is recorded durably all the same, and is
sent once; telemetry rounds commit in one transaction (real mosquitto, real SQLite)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from helpers.engines import make_publisher
from helpers.wait import wait_until

from agent.publish.outbox import Outbox
from agent.publish.watch import Received, TopicWatcher


def _wires(msgs: list[Received]) -> list[Received]:
    """Wire messages sent during the test (the shared broker's retained ones, of earlier tests, not)."""
    return [m for m in msgs if m.topic.endswith("/wire") and m.payload and not m.retain]


def test_wire_sent_once_and_its_row_acked(tmp_path: Path, mosquitto: Any) -> None:
    pub = make_publisher(tmp_path, mosquitto.port)
    with TopicWatcher(mosquitto.host, mosquitto.port) as watch:
        pub.start()
        try:
            assert pub.link.connected.wait(10)
            for i in range(20):
                pub.publish_wire(i % 2, changed_at=time.time(), level=3 * (i % 2))
            msgs = watch.wait_for(lambda m: len(_wires(m)) >= 20, 15)
            wait_until(lambda: pub.outbox.depth == 0, 10)
            time.sleep(0.3)  # a duplicate from the outbox sender would arrive within this
            wires = _wires(watch.snapshot())
            ids = [w.json()["msg_id"][:6] for w in wires]
            assert len(wires) == 20 == len(set(ids)), (ids, pub.stats()["link"])
            assert [w.json()["state"] for w in wires] == [i % 2 for i in range(20)]
            st = pub.stats()
            assert st["link"]["sent_before_commit"] == 20
            assert st["outbox"]["enqueued"] == st["outbox"]["sent"] == st["outbox"]["acked"] == 20
            assert len(msgs) >= 20
        finally:
            pub.stop()


def test_wire_reaches_broker_while_outbox_is_held(tmp_path: Path, mosquitto: Any) -> None:
    """Another job holds the outbox (a long commit): the wire message is received before the commit."""
    pub = make_publisher(tmp_path, mosquitto.port)
    with TopicWatcher(mosquitto.host, mosquitto.port) as watch:
        pub.start()
        try:
            assert pub.link.connected.wait(10)
            with pub.outbox._lock:  # what an fsync'd telemetry or ack commit would hold
                t = threading.Thread(
                    target=pub.publish_wire, args=(1,), kwargs={"changed_at": 1.0, "level": 3}
                )
                t.start()
                got = watch.wait_for(lambda m: len(_wires(m)) >= 1, 10)
                assert len(_wires(got)) == 1 and pub.outbox.depth == 0  # sent, not yet recorded
            t.join(10)
            wait_until(lambda: pub.stats()["outbox"]["acked"] == 1 and pub.outbox.depth == 0, 10)
            time.sleep(0.3)
            assert len(_wires(watch.snapshot())) == 1  # the committed row was adopted, not re-sent
        finally:
            pub.stop()


def test_wire_without_broker_is_kept_and_sent_later(tmp_path: Path, mosquitto: Any) -> None:
    pub = make_publisher(tmp_path, mosquitto.port + 1)  # nobody listens there
    pub.start()
    try:
        pub.publish_wire(1, changed_at=time.time(), level=3)
        assert pub.outbox.depth == 1 and pub.stats()["link"].get("sent_before_commit", 0) == 0
    finally:
        pub.stop()
    with Outbox(tmp_path / "outbox.sqlite") as ob:
        assert [m.message.topic.endswith("/wire") for m in ob.all_pending()] == [True]
    pub = make_publisher(tmp_path, mosquitto.port)
    with TopicWatcher(mosquitto.host, mosquitto.port) as watch:
        pub.start()
        try:
            got = watch.wait_for(lambda m: len(_wires(m)) >= 1, 15)
            assert _wires(got)[0].json()["state"] == 1
            wait_until(lambda: pub.outbox.depth == 0, 10)
        finally:
            pub.stop()


def test_telemetry_batch_commits_once_at_the_end(tmp_path: Path) -> None:
    pub = make_publisher(tmp_path, 1)  # never started: only the outbox side
    commits: list[int] = []
    real = pub.outbox.enqueue_many

    def counting(msgs: Any, meta: Any = None) -> list[int | None]:
        rows = real(msgs, meta)
        commits.append(len(rows))
        return rows

    pub.outbox.enqueue_many = counting  # type: ignore[method-assign,assignment]
    now = time.time()
    with pub.telemetry_batch():
        for sensor in ("rain", "gnss", "seismic"):
            pub.publish_telemetry(
                sensor, {f"{sensor}.x": 1.0}, window_start=now, window_end=now, completeness=1.0
            )
        assert pub.outbox.depth == 0
    assert commits == [3] and pub.outbox.depth == 3
    pub.publish_telemetry("rain", {"rain.mm": 1.0}, window_start=now, window_end=now, completeness=1.0)
    assert commits == [3, 1]
    pub.outbox.close()
