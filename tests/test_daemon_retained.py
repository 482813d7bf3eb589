"""Retained state always current, and the wire topic from one place, against a real mosquitto:

- a daemon restarted at level 0 (fresh state directory, or an unreadable alert state) leaves no
  retained alert above 0: a NEW subscriber is told level 0;
- restarted again and again with a tripped wire, the daemon publishes exactly one logical wire
  message (same ``changed_at``, same ``msg_id``; the subscriber counts by content);
- an open-circuit wire is published at the engine's ``fault_level``, not 0.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.broker import Broker
from helpers.wait import wait_until as _wait_until
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features.samples import Sample
from agent.publish.watch import Received, TopicWatcher

REPO = Path(__file__).resolve().parent.parent
SITE, NODE = "retained-site", "gw1"
ALERT = f"lews/v1/{SITE}/{NODE}/alert"
WIRE = f"lews/v1/{SITE}/{NODE}/wire"


def _config(root: Path, broker: Broker, **warning: Any) -> dict[str, Any]:
    return {
        "site": {"site": SITE, "node": NODE},
        "daemon": {"state_dir": str(root / "state"), "evaluate_interval_s": 0.05},
        "store": {"path": str(root / "store.sqlite")},
        "inference": {
            "bundle_dir": str(root / "none"),
            "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub"),
        },
        "warning": warning,
        "web": {"port": 0},  # any free port (8080 may be taken)
        "mqtt": {"host": broker.host, "port": broker.port, "outbox": {"path": str(root / "outbox.sqlite")}},
    }


def _drained(daemon: Daemon) -> bool:
    return bool(daemon.publisher.link.connected.is_set()) and daemon.publisher.outbox.depth == 0


def _retained(broker: Broker, topic: str) -> Received | None:
    """What a NEW subscriber is served on ``topic`` (the retained message), None when nothing."""
    watcher = TopicWatcher(broker.host, broker.port, topic).start()
    try:
        got = watcher.wait_for(lambda ms: bool(ms), 2.0)
    finally:
        watcher.stop()
    retained = [m for m in got if m.retain and m.payload]
    return retained[-1] if retained else None


def _trip_to_level_3(root: Path, broker: Broker) -> None:
    daemon = Daemon(config_from_dict(_config(root, broker)))
    daemon.start()
    try:
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 1.0)])
        assert _wait_until(lambda: daemon._last_level() == 3 and _drained(daemon))
    finally:
        daemon.stop()
    alert = _retained(broker, ALERT)
    assert alert is not None and alert.json()["level"] == 3


@pytest.mark.parametrize("how", ["fresh_state_dir", "unreadable_alert_state"])
def test_restart_at_level_0_leaves_no_retained_alert_above_0(
    how: str, tmp_path: Path, mosquitto: Broker
) -> None:
    first = tmp_path / "first"
    _trip_to_level_3(first, mosquitto)
    second = tmp_path / "second" if how == "fresh_state_dir" else first
    if how == "unreadable_alert_state":
        with sqlite3.connect(first / "outbox.sqlite") as conn:
            conn.execute("UPDATE meta SET value = 'not json' WHERE key = 'engine_state'")
        # the wire is intact again, so nothing holds level 3 (the restored trip would)
        with sqlite3.connect(first / "outbox.sqlite") as conn:
            conn.execute("DELETE FROM meta WHERE key = 'retained:wire'")
    daemon = Daemon(config_from_dict(_config(second, mosquitto)))
    daemon.start()
    try:
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 0.0)])
        assert _wait_until(lambda: daemon.counters["evaluations"] >= 2 and _drained(daemon))
        assert daemon._last_level() == 0
        alert = _retained(mosquitto, ALERT)
        assert alert is not None, "no retained alert at all"
        assert alert.json()["level"] == 0, alert.json()
        assert daemon.counters["current_alert_published"] == 1
    finally:
        daemon.stop()


def test_restarts_with_a_tripped_wire_publish_one_logical_wire_message(
    tmp_path: Path, mosquitto: Broker
) -> None:
    watcher = TopicWatcher(mosquitto.host, mosquitto.port, WIRE).start()
    t_trip = time.time() - 3600.0  # the real trip, an hour before the first frame of this test
    try:
        for k in range(4):
            daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto)))
            daemon.start()
            try:
                # the bridge repeats the state with every heartbeat: a new reading, the same trip
                t = t_trip if k == 0 else time.time()
                daemon.pipeline.emit("bridge", [Sample(t, "wire.state", 1.0)])
                assert _wait_until(lambda d=daemon: d._last_level() == 3 and _drained(d))  # type: ignore[misc]
                status = daemon.status()
                assert status["wire"]["changed_at"] == pytest.approx(t_trip), status["wire"]
            finally:
                daemon.stop()
        # every connect re-sends the retained wire state: wait for the fourth's
        watcher.wait_for(lambda ms: sum(1 for m in ms if m.payload) >= 4, 5.0)
    finally:
        watcher.stop()
    got = [m.json() for m in watcher.snapshot() if m.payload]
    contents = {(p["state"], p["changed_at"], p["level"]) for p in got}
    assert len(contents) == 1, contents  # one logical message, by content ...
    assert len({p["msg_id"] for p in got}) == 1, got  # ... and by id: re-sent as stored
    assert got[0]["state"] == 1 and got[0]["level"] == 3


def test_an_open_wire_is_published_at_the_engines_fault_level(tmp_path: Path, mosquitto: Broker) -> None:
    watcher = TopicWatcher(mosquitto.host, mosquitto.port, WIRE).start()
    daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto, wire={"fault_level": 2})))
    daemon.start()
    try:
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 2.0)])  # open circuit
        got = watcher.wait_for(lambda ms: any(m.payload for m in ms), 10.0)
        # the engine grades the same reading the same way (the wire topic's level is the engine's)
        assert _wait_until(lambda: daemon.status()["sources"].get("wire", {}).get("level") == 2)
    finally:
        daemon.stop()
        watcher.stop()
    wire = next(m.json() for m in got if m.payload)
    assert wire["state"] == 2 and wire["level"] == 2, wire


def _clear_retained(broker: Broker, *topics: str) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="clearer")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic in topics:
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_retained_state_lost_on_the_broker_is_restored_at_reconnect(
    tmp_path: Path, mosquitto: Broker
) -> None:
    """The broker loses the retained alert and wire (cleared here, as a broker without persistence loses
    them at its restart); at the next connect the daemon re-publishes the current ones."""
    daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto)))
    daemon.start()
    try:
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 1.0)])
        assert _wait_until(lambda: daemon._last_level() == 3 and _drained(daemon))
        _clear_retained(mosquitto, ALERT, WIRE)
        assert _retained(mosquitto, ALERT) is None and _retained(mosquitto, WIRE) is None
        connects = daemon.publisher.link.counters["connects"]
        mosquitto.stop()
        mosquitto.start()
        assert _wait_until(lambda: daemon.publisher.link.counters["connects"] > connects, 30.0)
        assert _wait_until(lambda: _drained(daemon))
        t_connect = time.monotonic()
        got: dict[str, Received | None] = {}

        def restored() -> bool:
            got.update(alert=_retained(mosquitto, ALERT), wire=_retained(mosquitto, WIRE))
            return got["alert"] is not None and got["wire"] is not None

        assert _wait_until(restored, 10.0), (got, daemon.publisher.retained.messages())
        waited = time.monotonic() - t_connect
        alert, wire = got["alert"], got["wire"]
        assert alert is not None and alert.json()["level"] == 3
        assert wire is not None and wire.json()["state"] == 1
        assert waited < 5.0, f"retained state back only {waited:.1f} s after the reconnect"
    finally:
        daemon.stop()
