"""Signed commands are replay-proof across restarts: the nonce store persists (SQLite beside the
outbox), pruning never re-opens a replay, and a retained command is never executed; against a real
mosquitto with the publisher restarted on the same state files."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.wait import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import CommandRejected
from agent.publish.commands import CommandVerifier, VerifiedCommand, sign_command
from agent.publish.nonces import NonceStore
from agent.publish.publisher import NONCE_FILE, Publisher
from agent.publish.settings import CommandKey, CommandSettings, MqttSettings
from agent.publish.watch import TopicWatcher

T0 = 1_763_800_000.0
SITE, NODE = "lamosano", "gw-1"


def _key(tmp_path: Path) -> tuple[bytes, Path]:
    key = secrets.token_bytes(32)
    path = tmp_path / "ops1.key"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key, path


def _verifier(key_file: Path, nonce_path: Path, clock: Callable[[], float]) -> CommandVerifier:
    cfg = CommandSettings(keys=[CommandKey(key_id="ops1", file=key_file, commands=["ack", "ping"])])
    return CommandVerifier.from_settings(cfg, clock=clock, nonce_path=nonce_path)


def test_a_command_accepted_before_a_restart_is_a_replay_after_it(tmp_path: Path) -> None:
    key, key_file = _key(tmp_path)
    doc = sign_command("ack", {"alert_id": "a1"}, key_id="ops1", hmac_key=key, t=T0 - 5)
    first = _verifier(key_file, tmp_path / NONCE_FILE, lambda: T0)
    assert first.verify("ack", json.dumps(doc).encode()).nonce == doc["nonce"]
    first.close()
    again = _verifier(key_file, tmp_path / NONCE_FILE, lambda: T0 + 1)  # the restarted agent
    with pytest.raises(CommandRejected) as err:
        again.verify("ack", json.dumps(doc).encode())
    assert err.value.reason == "replay"
    assert again.counters()["nonces_held"] == 1
    # an in-memory store (the old behaviour) would have accepted it: the test can tell the difference
    fresh = _verifier(key_file, tmp_path / "other.sqlite", lambda: T0 + 1)
    assert fresh.verify("ack", json.dumps(doc).encode())


def test_pruning_raises_a_floor_so_a_pruned_nonce_is_still_a_replay(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / "n.sqlite", keep_s=240.0, max_rows=2)
    for i, ts in enumerate((T0 - 30, T0 - 20, T0 - 10)):
        assert store.seen("ops1", f"n{i}", ts) is None
        assert store.record("ops1", f"n{i}", ts, now=T0)
    assert store.held() == 2  # n0 pruned (max_rows) ...
    why = store.seen("ops1", "n0", T0 - 30)
    assert why is not None and "horizon" in why  # ... and still refused
    assert store.seen("ops1", "n9", T0 - 31) is not None  # anything signed before the floor too
    assert store.seen("ops1", "n9", T0 - 5) is None  # newer commands are not affected
    assert store.seen("ops2", "n0", T0 - 30) is None  # floors are per key
    # age pruning: two freshness windows later everything goes, the floor stays
    store.record("ops1", "late", T0 + 1000, now=T0 + 1000)
    assert store.held() == 1
    assert store.seen("ops1", "n2", T0 - 10) is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=30))
def test_property_every_nonce_runs_at_most_once_whatever_the_restarts(
    tmp_path_factory: pytest.TempPathFactory, plan: list[tuple[int, bool]]
) -> None:
    """Commands 0..7 signed once each, sent in any order and any number of times, with a restart
    (new verifier on the same file) before any send: each command is accepted exactly once."""
    tmp = tmp_path_factory.mktemp("prop")
    key, key_file = _key(tmp)
    now = [T0]
    docs = [
        sign_command("ping", {}, key_id="ops1", hmac_key=key, t=T0 + i, nonce=f"nonce-{i:02d}-abcdefghij")
        for i in range(8)
    ]
    v = _verifier(key_file, tmp / NONCE_FILE, lambda: now[0])
    accepted: list[int] = []
    for index, restart in plan:
        if restart:
            v.close()
            v = _verifier(key_file, tmp / NONCE_FILE, lambda: now[0])
        now[0] += 25.0  # > the 6/min rate: the token bucket never decides here
        try:
            v.verify("ping", json.dumps(docs[index]).encode())
            accepted.append(index)
        except CommandRejected as exc:
            assert exc.reason in ("replay", "stale"), exc.reason
    v.close()
    assert len(accepted) == len(set(accepted))


def _publisher(tmp_path: Path, port: int, key_file: Path, ran: list[VerifiedCommand]) -> Publisher:
    settings = MqttSettings.model_validate(
        {
            "port": port,
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "reconnect_max_s": 2,
            "commands": {"keys": [{"key_id": "ops1", "file": str(key_file), "commands": ["ack"]}]},
        }
    )

    def on_ack(cmd: VerifiedCommand) -> str:
        ran.append(cmd)
        return "acknowledged"

    return Publisher(settings, site=SITE, node=NODE, agent_version="0.1.0", handlers={"ack": on_ack})


def _rejected(pub: Publisher) -> dict[str, int]:
    commands: dict[str, Any] = pub.stats()["commands"]
    return dict(commands["rejected"])


def _start(pub: Publisher, watch: TopicWatcher) -> None:
    """Start and wait for its birth message: it goes out after the SUBSCRIBE on the same connection,
    so once a subscriber sees it, the broker holds the agent's subscription."""
    since = time.time()
    pub.start()
    watch.wait_for(
        lambda ms: any(m.t >= since and m.topic.endswith("/status") and b'"online"' in m.payload for m in ms),
        15,
    )


def test_replayed_and_retained_commands_after_a_restart_are_refused_as_replay(
    tmp_path: Path, mosquitto: Any
) -> None:
    key, key_file = _key(tmp_path)
    topic = f"lews/v1/{SITE}/{NODE}/cmd/ack"
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="technician")
    sender.connect(mosquitto.host, mosquitto.port)
    sender.loop_start()
    ran: list[VerifiedCommand] = []
    captured = sign_command("ack", {"alert_id": "a1"}, key_id="ops1", hmac_key=key)
    rejected: dict[str, int] = {}
    try:
        with TopicWatcher(mosquitto.host, mosquitto.port, f"lews/v1/{SITE}/{NODE}/#") as watch:
            # 1st run: the command is accepted live, once
            pub = _publisher(tmp_path, mosquitto.port, key_file, ran)
            try:
                _start(pub, watch)
                sender.publish(topic, json.dumps(captured), qos=1).wait_for_publish(5)
                wait_until(lambda: len(ran) >= 1, 10, "the command to run")
            finally:
                pub.stop()
            assert [c.nonce for c in ran] == [captured["nonce"]]

            # The attacker stores the captured command as a retained message; the agent restarts
            # (a new publisher on the same files) and the broker serves the copy at the subscription.
            sender.publish(topic, json.dumps(captured), qos=1, retain=True).wait_for_publish(5)
            pub = _publisher(tmp_path, mosquitto.port, key_file, ran)
            try:
                _start(pub, watch)
                wait_until(lambda: _rejected(pub).get("replay", 0) >= 1, 10, "the retained command refused")
                sender.publish(topic, json.dumps(captured), qos=1).wait_for_publish(5)  # live replay
                wait_until(lambda: _rejected(pub).get("replay", 0) >= 2, 10, "the live replay refused")
                # a command signed 100 s ahead (to be held back and replayed later) is refused
                ahead = sign_command(
                    "ack", {"alert_id": "a2"}, key_id="ops1", hmac_key=key, t=time.time() + 100
                )
                sender.publish(topic, json.dumps(ahead), qos=1).wait_for_publish(5)
                wait_until(lambda: _rejected(pub).get("future", 0) >= 1, 10, "the future command refused")
            finally:
                pub.stop()
            # a validly signed command never seen, stored retained while the agent is down: at the
            # next start the broker serves it as a stored copy, and it never runs either (published
            # while the agent is subscribed, the broker forwards it live, without the retain flag)
            unseen = sign_command("ack", {"alert_id": "a3"}, key_id="ops1", hmac_key=key)
            sender.publish(topic, json.dumps(unseen), qos=1, retain=True).wait_for_publish(5)
            pub = _publisher(tmp_path, mosquitto.port, key_file, ran)
            try:
                _start(pub, watch)
                wait_until(lambda: _rejected(pub).get("replay", 0) >= 1, 10, "the unseen retained command")
                rejected = _rejected(pub)
            finally:
                pub.stop()
            time.sleep(0.3)
            answers = [m for m in watch.snapshot() if m.topic.endswith("/cmd_result")]
    finally:
        sender.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained copy
        sender.loop_stop()
        sender.disconnect()
    assert rejected == {"replay": 1}, rejected
    assert [c.nonce for c in ran] == [captured["nonce"]]  # executed once, in the first run only
    assert len(answers) == 1  # refused commands get no answer
    assert (tmp_path / NONCE_FILE).exists()
