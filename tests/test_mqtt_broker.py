"""The local broker for `agent demo`: mosquitto when installed, else amqtt in-process (MQTT 3.1.1 only,
which also exercises the publisher's fallback from MQTT 5 to 3.1.1)."""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from helpers.engines import engine_wire_trip
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import PublishError
from agent.publish import broker as broker_mod
from agent.publish.broker import start_local_broker
from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.publish.watch import TopicWatcher


def _publisher(tmp_path: Path, port: int, protocol: str = "auto") -> Publisher:
    s = MqttSettings.model_validate(
        {
            "port": port,
            "protocol": protocol,
            "outbox": {"path": str(tmp_path / "o.sqlite")},
            "reconnect_max_s": 1,
            "connack_timeout_s": 1.5,
        }
    )
    return Publisher(s, site="demo", node="gw", agent_version="0.1.0")


def _roundtrip(tmp_path: Path, port: int, expect_protocol: str) -> Publisher:
    with TopicWatcher("127.0.0.1", port, "lews/v1/demo/gw/#") as watch:
        pub = _publisher(tmp_path, port)
        pub.start()
        try:
            for i in range(5):
                now = time.time()
                pub.publish_telemetry(
                    "rain", {"rain.mm": float(i)}, window_start=now, window_end=now, completeness=1.0
                )
            pub.publish_evaluation(engine_wire_trip("demo"))
            msgs = watch.wait_for(lambda m: len([x for x in m if "/telemetry/" in x.topic]) >= 5, 15)
            vals = [m.json()["values"]["rain.mm"] for m in msgs if "/telemetry/" in m.topic]
            assert vals == [0.0, 1.0, 2.0, 3.0, 4.0]
            deadline = time.monotonic() + 10
            while pub.outbox.depth and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pub.outbox.depth == 0
            assert pub.stats()["link"]["protocol"] == expect_protocol
        finally:
            pub.stop()
    return pub


def test_local_mosquitto_broker(tmp_path: Path) -> None:
    if broker_mod.mosquitto_binary() is None:
        pytest.fail("mosquitto is not installed: run `make test` (it installs the Debian package)")
    with start_local_broker("mosquitto") as b:
        assert b.kind == "mosquitto" and b.address.startswith("127.0.0.1:")
        _roundtrip(tmp_path, b.port, "5")
    assert b._proc is not None and b._proc.poll() is not None  # process ended


def test_embedded_amqtt_broker_roundtrip_and_v5_fallback(tmp_path: Path) -> None:
    with start_local_broker("amqtt") as b:
        assert b.kind == "amqtt"
        # plain paho client round trip through the in-process broker
        got: list[bytes] = []
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub", protocol=mqtt.MQTTv311)
        sub.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
        sub.connect(b.host, b.port)
        sub.subscribe("t/#", qos=1)
        sub.loop_start()
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv311)
        pub.connect(b.host, b.port)
        pub.loop_start()
        time.sleep(0.3)
        pub.publish("t/1", b"hello", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
        assert got == [b"hello"]
        # the agent's publisher asks for MQTT 5, is refused, and falls back to 3.1.1
        p = _roundtrip(tmp_path, b.port, "3.1.1")
        assert p.link.counters["protocol_fallback"] == 1


def test_auto_prefers_mosquitto_and_amqtt_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "mosquitto_binary", lambda: None)
    with pytest.raises(PublishError, match="mosquitto is not installed"):
        start_local_broker("mosquitto")
    with start_local_broker("auto") as b:
        assert b.kind == "amqtt"
