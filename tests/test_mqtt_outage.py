"""Broker outages against a real mosquitto: nothing accepted is lost, the backlog is replayed in order
and marked historical; repeated restarts; SIGKILL of the publishing process between send and ack."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker
from helpers.engines import engine_wire_trip
from helpers.wait import wait_until

from agent.publish import schemas
from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.publish.watch import Received, TopicWatcher, unique_by_msg_id

SITE, NODE = "urbas", "gw-2"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker(mosquitto: Broker) -> Broker:
    """The shared mosquitto fixture: it keeps sessions across restarts, so the subscriber misses nothing."""
    return mosquitto


def make_publisher(tmp_path: Path, port: int, **kw: Any) -> Publisher:
    settings = MqttSettings.model_validate(
        {
            "port": port,
            "outbox": {"path": str(tmp_path / "outbox.sqlite"), "historical_after_s": 0.5},
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
            "keepalive_s": 5,
            **kw,
        }
    )
    return Publisher(settings, site=SITE, node=NODE, agent_version="0.1.0", backend="onnxruntime")


def telemetry(pub: Publisher, i: int) -> None:
    now = time.time()
    pub.publish_telemetry("gnss", {"gnss.e_mm": float(i)}, window_start=now, window_end=now, completeness=1.0)


def seqs(msgs: list[Received]) -> list[int]:
    return [int(m.json()["values"]["gnss.e_mm"]) for m in msgs if "/telemetry/" in m.topic]


def wait_drained(pub: Publisher, timeout: float) -> None:
    wait_until(lambda: pub.outbox.depth == 0, timeout, f"the outbox to drain ({pub.stats()})")


@pytest.mark.faults
def test_broker_down_for_a_while_loses_nothing_and_replays_historical_in_order(
    tmp_path: Path, broker: Any
) -> None:
    watch = TopicWatcher(
        broker.host, broker.port, f"lews/v1/{SITE}/{NODE}/#", client_id="w1", persistent=True
    )
    watch.start()
    pub = make_publisher(tmp_path, broker.port)
    pub.start()
    try:
        assert pub.link.connected.wait(10)
        for i in range(10):
            telemetry(pub, i)
        wait_drained(pub, 10)
        broker.stop()
        assert not pub.link.connected.wait(0) or _wait_false(pub, 10)
        for i in range(10, 40):
            telemetry(pub, i)
        pub.publish_evaluation(engine_wire_trip(SITE, time.time()))
        assert pub.outbox.depth == 33  # held durably while the broker is away
        time.sleep(1.0)
        broker.start()
        wait_drained(pub, 20)
        msgs = watch.wait_for(lambda m: len(seqs(unique_by_msg_id(m))) >= 40, 20)
        uniq = unique_by_msg_id(msgs)
        assert seqs(uniq) == list(range(40))  # nothing lost, order kept
        for m in uniq:
            if m.topic.endswith("/status") or m.topic.endswith("/cap"):
                continue
            doc = m.json()
            assert schemas.errors(doc["schema"].removeprefix("lews."), doc) == []
            n = doc["values"]["gnss.e_mm"] if "/telemetry/" in m.topic else 99
            if n < 10:
                assert doc["historical"] is False
            else:  # queued during the outage: marked, with the original time
                assert doc["historical"] is True, m.topic
                assert doc["queued_s"] >= 0.5 and doc["original_time"].endswith("Z")
        event = next(m for m in uniq if m.topic.endswith("/alert/event"))
        first_replayed = next(
            i for i, m in enumerate(uniq) if "/telemetry/" in m.topic and seqs([m])[0] >= 10
        )
        assert uniq.index(event) < first_replayed  # the alert overtook the queued telemetry
        st = pub.stats()
        assert st["link"]["disconnects"] >= 1 and st["link"]["connects"] >= 2
        assert st["link"]["historical"] >= 31
    finally:
        pub.stop()
        watch.stop()


def _wait_false(pub: Publisher, timeout: float) -> bool:
    return wait_until(lambda: not pub.link.connected.is_set(), timeout, "the link to go down")


@pytest.mark.faults
def test_broker_restarted_repeatedly_while_publishing(tmp_path: Path, broker: Any) -> None:
    watch = TopicWatcher(
        broker.host, broker.port, f"lews/v1/{SITE}/{NODE}/#", client_id="w2", persistent=True
    )
    watch.start()
    pub = make_publisher(tmp_path, broker.port)
    pub.start()
    n = 0
    try:
        assert pub.link.connected.wait(10)
        for _restart in range(4):
            for _ in range(25):
                telemetry(pub, n)
                n += 1
                time.sleep(0.004)
            broker.stop()
            assert _wait_false(pub, 10)
            for _ in range(5):  # published while the broker is down
                telemetry(pub, n)
                n += 1
            broker.start()
            assert pub.link.connected.wait(10)
        for _ in range(10):
            telemetry(pub, n)
            n += 1
        wait_drained(pub, 30)
        msgs = watch.wait_for(lambda m: len(set(seqs(m))) >= n, 20)
        got = seqs(msgs)
        assert sorted(set(got)) == list(range(n))  # every message arrived at least once
        uniq = seqs(unique_by_msg_id(msgs))
        assert len(uniq) == n  # duplicates (QoS 1 after a restart) carry the same msg_id
        assert pub.stats()["link"]["connects"] >= 5
    finally:
        pub.stop()
        watch.stop()


WRITER = r"""
import sys, time
from agent.publish.settings import MqttSettings
from agent.publish.publisher import Publisher
cfg = {"port": int(sys.argv[2]), "outbox": {"path": sys.argv[1]}, "reconnect_max_s": 1}
s = MqttSettings.model_validate(cfg)
p = Publisher(s, site="urbas", node="gw-2", agent_version="0.1.0")
p.start()
i = int(sys.argv[3])
while True:
    now = time.time()
    p.publish_telemetry("gnss", {"gnss.e_mm": float(i)}, window_start=now, window_end=now, completeness=1.0)
    sys.stdout.write(f"{i}\n")
    sys.stdout.flush()
    i += 1
    time.sleep(0.002)
"""


def _run_writer(outbox: Path, port: int, start: int, lines: int) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(outbox), str(port), str(start)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    accepted: list[int] = []
    while len(accepted) < lines:
        line = proc.stdout.readline()
        if not line:
            break
        accepted.append(int(line))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    return accepted


@pytest.mark.faults
def test_sigkill_of_publisher_then_restart_delivers_everything(tmp_path: Path, broker: Any) -> None:
    watch = TopicWatcher(
        broker.host, broker.port, f"lews/v1/{SITE}/{NODE}/#", client_id="w3", persistent=True
    )
    watch.start()
    outbox = tmp_path / "outbox.sqlite"
    accepted: list[int] = []
    for k in range(3):
        accepted += _run_writer(outbox, broker.port, 10_000 * k, 150)
    assert len(accepted) == 450
    pub = make_publisher(tmp_path, broker.port)  # same outbox file: sends what was left
    pub.start()
    try:
        wait_drained(pub, 30)
        msgs = watch.wait_for(lambda m: set(accepted) <= set(seqs(m)), 20)
        assert set(accepted) <= set(seqs(msgs)), sorted(set(accepted) - set(seqs(msgs)))[:10]
        uniq = unique_by_msg_id(msgs)
        assert sorted(seqs(uniq)) == sorted(set(seqs(uniq)))  # after de-duplication each exactly once
    finally:
        pub.stop()
        watch.stop()


@pytest.mark.faults
def test_outbox_disk_full_refuses_new_keeps_accepted_and_recovers(tmp_path: Path, broker: Any) -> None:
    """Disk full (the outbox's hard size limit) while the broker is down: new telemetry is shed (counted,
    never an exception: the caller's loop goes on), every accepted message is delivered when the broker
    is back, and publishing works again."""
    watch = TopicWatcher(
        broker.host, broker.port, f"lews/v1/{SITE}/{NODE}/#", client_id="w4", persistent=True
    )
    watch.start()  # its session (and queue) survives the broker restart
    broker.stop()
    pub = make_publisher(
        tmp_path, broker.port, outbox={"path": str(tmp_path / "o.sqlite"), "hard_limit_mb": 0.25}
    )
    pub.start()
    accepted = 0
    try:
        for i in range(5000):
            telemetry(pub, i)
            if pub.counters["shed"]:
                break
            accepted += 1
        assert pub.counters["shed"] == 1, "the full outbox never refused telemetry"
        assert accepted > 50 and pub.outbox.depth == accepted
        broker.start()
        wait_drained(pub, 30)
        telemetry(pub, accepted)  # room again
        wait_drained(pub, 10)
        msgs = watch.wait_for(lambda m: len(set(seqs(m))) >= accepted + 1, 20)
        assert set(seqs(msgs)) == set(range(accepted + 1))
        assert pub.stats()["outbox"]["acked"] == accepted + 1
    finally:
        pub.stop()
        watch.stop()


class Partition:
    """A TCP proxy in front of the broker that can black-hole traffic (a network partition: no RST, no
    FIN, packets just stop), then heal (dropping the dead connections, like a NAT that forgot them)."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.frozen = threading.Event()
        self._conns: list[socket.socket] = []
        self._lsock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._lsock.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._lsock.accept()
            except OSError:
                return
            if self.frozen.is_set():
                self._conns.append(client)  # accepted by the kernel, never answered
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        with contextlib.suppress(OSError):  # a closed socket ends the pump
            while data := src.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.05)  # the partition: hold everything
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def heal(self) -> None:
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
        self._conns.clear()
        self.frozen.clear()

    def close(self) -> None:
        self._closed = True
        self._lsock.close()
        self.heal()


@pytest.mark.faults
def test_network_partition_detected_by_keepalive_and_nothing_lost(tmp_path: Path, broker: Any) -> None:
    watch = TopicWatcher(
        broker.host, broker.port, f"lews/v1/{SITE}/{NODE}/#", client_id="w5", persistent=True
    )
    watch.start()
    proxy = Partition(broker.port)
    pub = make_publisher(tmp_path, proxy.port)  # keepalive 5 s
    pub.start()
    try:
        assert pub.link.connected.wait(10)
        for i in range(5):
            telemetry(pub, i)
        wait_drained(pub, 10)
        proxy.frozen.set()
        for i in range(5, 25):  # sent into the black hole: no PUBACK
            telemetry(pub, i)
            time.sleep(0.01)
        assert _wait_false(pub, 20), "keepalive did not detect the partition"
        assert pub.outbox.depth > 0
        proxy.heal()
        wait_drained(pub, 20)
        msgs = watch.wait_for(lambda m: set(range(25)) <= set(seqs(m)), 15)
        assert set(seqs(msgs)) == set(range(25))
        assert len(seqs(unique_by_msg_id(msgs))) == 25
        assert pub.stats()["link"]["disconnects"] >= 1
    finally:
        pub.stop()
        proxy.close()
        watch.stop()
