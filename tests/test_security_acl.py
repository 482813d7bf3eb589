"""The example broker ACL (systemd/mosquitto-acl.example) on a real mosquitto with a password file made
by `mosquitto_passwd -b`: a gateway writes only its own tree, subscribers only read, operators send
commands; and the real daemon publishes everything it must under that ACL (the ACL is not too tight)."""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.broker import Broker, free_port, running_broker
from helpers.mqtt_checks import unique
from helpers.wait import wait_until
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features.samples import Sample
from agent.publish.watch import Received

REPO = Path(__file__).resolve().parent.parent
ACL = REPO / "systemd" / "mosquitto-acl.example"
USERS = {name: "pw-" + secrets.token_hex(8) for name in ("gw1", "gw2", "dashboard", "ops")}


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    pwfile = tmp_path / "passwd"
    for i, (user, pw) in enumerate(USERS.items()):
        args = ["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [str(pwfile), user, pw]
        subprocess.run(args, check=True, capture_output=True)
    port = free_port()
    settings = f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\nacl_file {ACL}\n"
    with running_broker(tmp_path, "acl", port, settings) as broker:
        yield broker


class Client:
    """A plain MQTT 5 client logged in as ``user``; keeps what it receives and the PUBACK reason codes."""

    def __init__(self, broker: Broker, user: str, subscribe: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, int] = {}
        self._ready = threading.Event()
        self._sub = subscribe
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{secrets.token_hex(3)}",
                             protocol=mqtt.MQTTv5)  # fmt: skip
        self.c.username_pw_set(user, USERS[user])
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *_a: self._ready.set()
        self.c.on_message = lambda _c, _u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_publish = self._on_publish
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert self._ready.wait(10), f"{user} could not connect/subscribe"

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc != 0:
            return
        if self._sub:
            client.subscribe(self._sub, qos=1)
        else:
            self._ready.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any = None) -> None:
        self.pubacks[mid] = int(rc.value)

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        info = self.c.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.pubacks.get(info.mid, -1)

    def stop(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


NOT_AUTHORIZED = 135  # MQTT 5 PUBACK reason code


@pytest.mark.faults
def test_gateway_writes_only_its_own_tree_and_subscribers_only_read(acl_broker: Broker) -> None:
    dash = Client(acl_broker, "dashboard", subscribe="lews/v1/#")
    gw1 = Client(acl_broker, "gw1", subscribe="lews/v1/+/gw1/cmd/+")
    gw2 = Client(acl_broker, "gw2", subscribe="lews/v1/site/gw1/cmd/+")  # eavesdrop attempt
    ops = Client(acl_broker, "ops")
    try:
        assert gw1.publish("lews/v1/site/gw1/alert", b"own") == 0
        assert gw1.publish("lews/v1/site/gw1/telemetry/rain", b"own-telemetry") == 0
        assert gw1.publish("lews/v1/site/gw2/alert", b"forged") == NOT_AUTHORIZED  # another node's tree
        assert gw1.publish("lews/v1/site/gw1/cmd/ack", b"self-command") == NOT_AUTHORIZED
        assert gw1.publish("lews/v2/site/gw1/alert", b"outside") == NOT_AUTHORIZED
        assert dash.publish("lews/v1/site/gw1/alert", b"dashboard-write") == NOT_AUTHORIZED
        assert ops.publish("lews/v1/site/gw1/cmd/ack", b"signed-command") == 0
        allowed = {b"own", b"own-telemetry", b"signed-command"}
        wait_until(lambda: allowed <= {p for _t, p in dash.got} and gw1.got, 10, "the allowed messages")
        seen = {p for _t, p in dash.got}
        assert not seen & {b"forged", b"self-command", b"outside", b"dashboard-write"}
        assert gw1.got == [("lews/v1/site/gw1/cmd/ack", b"signed-command")]
        assert gw2.got == []  # a gateway cannot read another gateway's commands
    finally:
        for c in (dash, gw1, gw2, ops):
            c.stop()


@pytest.mark.faults
def test_the_daemon_publishes_everything_under_the_example_acl(tmp_path: Path, acl_broker: Broker) -> None:
    pw = tmp_path / "mqtt-password"
    pw.write_text(USERS["gw1"] + "\n")
    pw.chmod(0o600)
    cfg = config_from_dict({
        "site": {"site": "acl-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.05},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "inference": {"bundle_dir": str(tmp_path / "none"),
                      "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub")},
        "mqtt": {"host": acl_broker.host, "port": acl_broker.port, "username": "gw1",
                 "password_file": str(pw), "outbox": {"path": str(tmp_path / "outbox.sqlite")}},
    })  # fmt: skip
    dash = Client(acl_broker, "dashboard", subscribe="lews/v1/#")
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert daemon.publisher.link.connected.wait(10)
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 1.0)])
        wait_until(lambda: daemon._last_level() == 3 and not daemon.publisher.outbox.stats()["depth"], 30)
    finally:
        daemon.stop()
    time.sleep(0.5)
    dash.stop()
    received = [Received(t, p, False, 0.0) for t, p in dash.got]
    msgs = unique(received)
    counters = daemon.publisher.outbox.counters
    assert counters["enqueued"] >= 4  # wire, alert, alert/event, cap at least
    assert counters["acked"] == counters["enqueued"] == len(msgs), (dict(counters), [m.topic for m in msgs])
    kinds = {m.topic.split("/", 4)[-1] for m in msgs}
    assert {"wire", "alert", "alert/event", "cap"} <= kinds
    assert any(t.endswith("/status") and b"offline" in p for t, p in dash.got)  # the shutdown status
