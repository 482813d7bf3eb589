"""Publishing through a real mosquitto (tests/conftest.py): ack round trip, retained topics, priorities,
schema validation of what subscribers receive, signed commands through the broker."""

from __future__ import annotations

import csv
import json
import secrets
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.engines import NODE, SITE, engine_lifecycle, engine_wire_trip, make_publisher
from paho.mqtt.enums import CallbackAPIVersion

from agent.compat import UTC
from agent.publish import schemas
from agent.publish.cap import CAP_NS
from agent.publish.commands import VerifiedCommand, sign_command
from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.publish.watch import Received, TopicWatcher, unique_by_msg_id


def validate_received(msgs: list[Received]) -> None:
    for m in msgs:
        if m.topic.endswith("/cap"):
            root = ET.fromstring(m.payload)
            assert root.tag == f"{{{CAP_NS}}}alert"
            continue
        doc = m.json()
        assert schemas.errors(doc["schema"].removeprefix("lews."), doc) == [], m.topic


def lamosano_rain(shared_data: Path, n: int) -> list[tuple[float, float]]:
    rows = list(csv.DictReader((shared_data / "lamosano-italy" / "rain_hourly.csv").open()))
    wet = [r for r in rows if float(r["rain"] or 0) > 0][:n]
    return [
        (datetime.strptime(r["date"], "%d/%m/%Y %H:%M").replace(tzinfo=UTC).timestamp(), float(r["rain"]))
        for r in wet
    ]


def test_roundtrip_every_kind_acked_once_and_valid(tmp_path: Path, mosquitto: Any, shared_data: Path) -> None:
    rain = lamosano_rain(shared_data, 20)
    with TopicWatcher(mosquitto.host, mosquitto.port) as watch:
        pub = make_publisher(tmp_path, mosquitto.port)
        pub.start()
        try:
            for t, mm in rain:
                pub.publish_telemetry(
                    "rain", {"rain.mm": mm}, window_start=t, window_end=t + 3600, completeness=1.0
                )
            pub.publish_forecast(
                valid_from=rain[-1][0],
                horizon_s=86400.0,
                predicted_mm={"disp_e_mm": 3.2},
                exceedance=[{"threshold_mm": 5.0, "probability": 0.2, "level": "watch"}],
                level=1,
                model_version="m1",
                backend="onnxruntime",
                completeness=0.95,
            )
            pub.publish_wire(0, changed_at=rain[0][0], level=0)
            pub.publish_riskmap({"tiles": 2, "lsi_max": 0.7}, level=1, model_version="u1", completeness=1.0)
            pub.publish_evaluation(engine_wire_trip(SITE))
            expected = 20 + 3 + 3  # telemetry + forecast/wire/riskmap + event/alert/cap
            msgs = watch.wait_for(
                lambda m: sum(1 for x in m if not x.topic.endswith("/status")) >= expected, 15
            )
            data = [m for m in msgs if not m.topic.endswith("/status")]
            assert len(data) == expected
            validate_received(msgs)
            rain_vals = [m.json()["values"]["rain.mm"] for m in data if "/telemetry/rain" in m.topic]
            assert rain_vals == [mm for _, mm in rain]  # in order
            assert any(m.topic.endswith("/status") and m.json()["state"] == "online" for m in msgs)
            deadline = time.monotonic() + 5
            while pub.outbox.depth and time.monotonic() < deadline:
                time.sleep(0.05)
            st = pub.stats()
            assert st["outbox"]["depth"] == 0
            assert st["outbox"]["enqueued"] == st["outbox"]["sent"] == st["outbox"]["acked"] == expected
            assert st["link"]["protocol"] == "5"
        finally:
            pub.stop()


def test_retained_state_for_late_subscriber_and_offline_on_stop(tmp_path: Path, mosquitto: Any) -> None:
    pub = make_publisher(tmp_path, mosquitto.port)
    pub.start()
    pub.publish_wire(1, changed_at=time.time(), level=3)
    pub.publish_evaluation(engine_wire_trip(SITE))
    deadline = time.monotonic() + 10
    while (pub.outbox.depth or not pub.link.connected.is_set()) and time.monotonic() < deadline:
        time.sleep(0.05)
    with TopicWatcher(mosquitto.host, mosquitto.port) as late:
        msgs = late.wait_for(lambda m: len({x.topic for x in m}) >= 4, 10)
        by_topic = {m.topic.split(f"{NODE}/")[1]: m for m in msgs}
        assert {"status", "alert", "wire", "cap"} <= set(by_topic)
        assert all(m.retain for m in by_topic.values())
        assert "alert/event" not in by_topic  # lifecycle events are not retained
        assert by_topic["status"].json()["state"] == "online"
        assert by_topic["alert"].json()["level"] == 3 and by_topic["wire"].json()["state_name"] == "tripped"
        pub.stop()
        off = late.wait_for(
            lambda m: any(x.topic.endswith("/status") and b'"offline"' in x.payload for x in m), 5
        )
        last = [m for m in off if m.topic.endswith("/status")][-1].json()
        assert last["state"] == "offline" and last["reason"] == "shutdown"
        validate_received(off)


def test_alerts_overtake_queued_telemetry(tmp_path: Path, mosquitto: Any) -> None:
    pub = make_publisher(tmp_path, mosquitto.port, inflight_window=5)
    now = time.time()
    for i in range(60):
        pub.publish_telemetry(
            "gnss", {"gnss.e_mm": float(i)}, window_start=now, window_end=now, completeness=1.0
        )
    pub.publish_wire(1, changed_at=now, level=3)  # queued last, sent first
    with TopicWatcher(mosquitto.host, mosquitto.port) as watch:
        pub.start()
        try:
            msgs = watch.wait_for(lambda m: sum(1 for x in m if "/telemetry/" in x.topic) >= 60, 15)
            data = [m.topic.rsplit("/", 1)[-1] for m in msgs if not m.topic.endswith("/status")]
            assert data[0] == "wire"
            assert len(data) == 61
        finally:
            pub.stop()


def test_signed_command_through_broker(tmp_path: Path, mosquitto: Any) -> None:
    key = secrets.token_bytes(32)
    key_file = tmp_path / "ops.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    acked: list[VerifiedCommand] = []

    def on_ack(cmd: VerifiedCommand) -> str:
        acked.append(cmd)
        return f"alert {cmd.args['alert_id']} acknowledged"

    pub = make_publisher(
        tmp_path,
        mosquitto.port,
        commands={"keys": [{"key_id": "ops1", "file": str(key_file), "commands": ["ack"]}]},
        handlers={"ack": on_ack},
    )
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="technician")
    with TopicWatcher(mosquitto.host, mosquitto.port, f"lews/v1/{SITE}/{NODE}/cmd_result") as results:
        pub.start()
        try:
            assert pub.link.connected.wait(10)
            time.sleep(0.3)  # let the agent's SUBSCRIBE reach the broker
            sender.connect(mosquitto.host, mosquitto.port)
            sender.loop_start()
            topic = f"lews/v1/{SITE}/{NODE}/cmd/ack"
            good = sign_command("ack", {"alert_id": "a1"}, key_id="ops1", hmac_key=key)
            forged = sign_command("ack", {"alert_id": "a1"}, key_id="ops1", hmac_key=secrets.token_bytes(32))
            for doc in (forged, good, good):  # forged, accepted, replayed
                sender.publish(topic, json.dumps(doc), qos=1).wait_for_publish(5)
            msgs = results.wait_for(lambda m: len(m) >= 1, 10)
            time.sleep(0.5)
            msgs = results.snapshot()
            assert len(msgs) == 1  # rejected commands get no answer
            res = msgs[0].json()
            assert res["accepted"] is True and res["detail"] == "alert a1 acknowledged"
            assert res["nonce"] == good["nonce"]
            assert schemas.errors("cmd_result", res) == []
            assert [c.args["alert_id"] for c in acked] == ["a1"]
            counters = pub.stats()["commands"]
            assert counters["accepted"] == 1
            assert counters["rejected"] == {"bad_signature": 1, "replay": 1}
        finally:
            sender.loop_stop()
            sender.disconnect()
            pub.stop()


def test_engine_lifecycle_on_mqtt_with_linked_cap(tmp_path: Path, mosquitto: Any) -> None:
    """trigger -> update -> acknowledge -> resolve from the real warning engine: events in order, the
    retained alert follows, CAP goes Alert -> Update (references) -> Cancel (all references)."""
    eng, results, ack = engine_lifecycle(SITE, time.time() - 5 * 3600)
    ns = {"c": CAP_NS}
    with TopicWatcher(mosquitto.host, mosquitto.port) as watch:
        pub = make_publisher(tmp_path, mosquitto.port)
        pub.start()
        try:
            pub.publish_evaluation(results[0])
            pub.publish_evaluation(results[1])
            pub.publish_alert_event(
                ack,
                current_explanation=results[1].explanation,
                current_level=int(results[1].published_level),
                current_alert_id=ack.alert_id,
                acknowledged_by="ops-maria",
            )
            pub.publish_evaluation(results[2])
            msgs = watch.wait_for(lambda m: sum(1 for x in m if x.topic.endswith("/cap")) >= 4, 15)
        finally:
            pub.stop()
    validate_received(msgs)
    events = [m.json() for m in msgs if m.topic.endswith("/alert/event")]
    assert [e["event_type"] for e in events] == ["trigger", "update", "acknowledge", "resolve"]
    alerts = [m.json() for m in msgs if m.topic.endswith("/alert")]
    assert [a["level"] for a in alerts] == [1, 2, 2, 0]
    assert alerts[2]["acknowledged_by"] == "ops-maria" and alerts[3]["alert_id"] is None
    caps = [ET.fromstring(m.payload) for m in msgs if m.topic.endswith("/cap")]
    types = [c.findtext("c:msgType", namespaces=ns) for c in caps]
    assert types == ["Alert", "Update", "Update", "Cancel"]
    first = caps[0]
    ref0 = ",".join(first.findtext(f"c:{k}", namespaces=ns) or "" for k in ("sender", "identifier", "sent"))
    refs = [(c.findtext("c:references", namespaces=ns) or "").split() for c in caps]
    assert refs[0] == [] and refs[1] == [ref0] and len(refs[2]) == 2 and len(refs[3]) == 3
    assert caps[0].findtext("c:info/c:certainty", namespaces=ns) == "Observed"  # velocity is measured
    assert "velocity" in (caps[0].findtext("c:info/c:description", namespaces=ns) or "")
    assert eng.state.alert_id is None


def test_dedup_helper_keeps_first_per_msg_id() -> None:
    def rec(mid: str, n: int) -> Received:
        return Received("t", json.dumps({"msg_id": mid, "n": n}).encode(), False, 0.0)

    out = unique_by_msg_id([rec("a", 1), rec("b", 2), rec("a", 3), Received("cap", b"<x/>", False, 0.0)])
    assert [json.loads(m.payload).get("n") if m.topic == "t" else None for m in out] == [1, 2, None]


@pytest.mark.faults
def test_lwt_offline_seen_when_agent_process_is_killed(tmp_path: Path, mosquitto: Any) -> None:
    import os
    import signal
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    script = (
        "import sys, time\n"
        "from agent.publish.settings import MqttSettings\n"
        "from agent.publish.publisher import Publisher\n"
        f"s = MqttSettings.model_validate({{'port': {mosquitto.port}, 'outbox': {{'path': sys.argv[1]}}}})\n"
        f"p = Publisher(s, site='{SITE}', node='{NODE}', agent_version='0.1.0', backend='rules-only')\n"
        "p.start()\n"
        "time.sleep(60)\n"
    )
    with TopicWatcher(mosquitto.host, mosquitto.port, f"lews/v1/{SITE}/{NODE}/status") as watch:
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / "o.sqlite")],
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        try:
            online = watch.wait_for(lambda m: any(b'"online"' in x.payload for x in m), 20)
            assert any(b'"online"' in x.payload for x in online)
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            msgs = watch.wait_for(lambda m: any(b'"offline"' in x.payload for x in m), 15)
            off = [m.json() for m in msgs if b'"offline"' in m.payload]
            assert off and off[-1]["reason"] == "connection lost (last will)"
            assert off[-1]["backend"] == "rules-only"
            assert schemas.errors("status", off[-1]) == []
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.faults
def test_commands_still_accepted_after_broker_restart(tmp_path: Path, mosquitto: Any) -> None:
    """The cmd/+ subscription is renewed in on_connect: a clean-session reconnect would lose it otherwise."""
    key = secrets.token_bytes(32)
    key_file = tmp_path / "ops.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    pub = make_publisher(
        tmp_path,
        mosquitto.port,
        commands={"keys": [{"key_id": "ops1", "file": str(key_file), "commands": ["ping"]}]},
    )
    pub.start()
    try:
        assert pub.link.connected.wait(10)
        mosquitto.restart()
        deadline = time.monotonic() + 15
        while pub.stats()["link"].get("connects", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.stats()["link"]["connects"] >= 2
        with TopicWatcher(mosquitto.host, mosquitto.port, f"lews/v1/{SITE}/{NODE}/cmd_result") as results:
            time.sleep(0.3)
            sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="technician2")
            sender.connect(mosquitto.host, mosquitto.port)
            sender.loop_start()
            doc = sign_command("ping", {}, key_id="ops1", hmac_key=key)
            sender.publish(f"lews/v1/{SITE}/{NODE}/cmd/ping", json.dumps(doc), qos=1).wait_for_publish(5)
            msgs = results.wait_for(lambda m: len(m) >= 1, 10)
            sender.loop_stop()
            sender.disconnect()
        assert [m.json()["detail"] for m in msgs] == ["pong"]
    finally:
        pub.stop()


def test_simulated_clock_dates_payloads_but_queue_age_is_real_time(tmp_path: Path, mosquitto: Any) -> None:
    """`agent demo` runs the daemon on a fast simulated clock: payload times follow it, but a message
    sent at once is not 'historical' (the outbox ages messages in wall-clock time)."""
    sim = {"t": 1_767_225_600.0}  # 2026-01-01

    def clock() -> float:
        sim["t"] += 3600.0  # an hour of scenario per call
        return sim["t"]

    settings = MqttSettings.model_validate(
        {"port": mosquitto.port, "outbox": {"path": str(tmp_path / "o.sqlite"), "historical_after_s": 2.0}}
    )
    with TopicWatcher(mosquitto.host, mosquitto.port, f"lews/v1/{SITE}/{NODE}/telemetry/#") as watch:
        pub = Publisher(settings, site=SITE, node=NODE, agent_version="0.1.0", clock=clock)
        pub.start()
        try:
            for i in range(5):
                t = clock()
                pub.publish_telemetry(
                    "rain", {"rain.mm": float(i)}, window_start=t, window_end=t, completeness=1.0
                )
            msgs = watch.wait_for(lambda m: len(m) >= 5, 10)
        finally:
            pub.stop()
    docs = [m.json() for m in msgs]
    assert len(docs) == 5 and all(d["historical"] is False for d in docs)
    assert all(d["time"].startswith("2026-01-0") for d in docs)
