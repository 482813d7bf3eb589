"""kill -9 loop: the real daemon (`agent run` in a subprocess) killed and restarted N times during the
demo storm (SYNTHETIC), with a broker outage in the middle, against a real mosquitto. A subscriber
with a persistent session counts what it receives:

- lost: alert events missing from the gapless global ``seq`` (and the wire trip never received);
- duplicates by message id: the same ``msg_id`` received twice (QoS 1 redelivery: marked, a
  subscriber de-duplicates on it; counted, not a failure);
- unmarked duplicates: the same content under a different ``msg_id`` (a logical re-publication: an
  alert event seq, a wire change (state, changed_at), a telemetry window, a command result), and a
  wire message repeating the state of the one before it (a restart claiming a new trip). Those a
  subscriber cannot tell from new news.

The short form (3 restarts) runs in CI; the long form (``LEWS_KILL_LOOP_N``, default 20) is ``slow``.
The figures go to docs/reliability.md. Printed: one JSON line ``KILL_LOOP {...}`` per run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.mqtt_checks import alert_events, chain_problems, kind_of, msg_key

from agent.demo.harness import SubprocessSite
from agent.demo.scenario import DAY, START_UTC, storm
from agent.publish.watch import Received, TopicWatcher

pytestmark = pytest.mark.faults


def content_key(m: Received) -> tuple[Any, ...] | None:
    """What a message says, without its id and send time; None for topics that repeat by design
    (status, the retained alert/riskmap/forecast mirrors: a re-publication there is the current state)."""
    kind = kind_of(m.topic)
    if kind == "cap":
        return None  # CAP identifiers are the msg key already (identifier per event)
    doc = m.json()
    if kind == "alert_event":
        return (kind, doc["seq"])
    if kind == "wire":
        return (kind, doc["state"], doc.get("changed_at"))
    if kind == "telemetry":
        return (kind, m.topic, doc.get("window_start"), doc.get("window_end"))
    if kind == "cmd_result":
        return (kind, doc.get("nonce"))
    return None


def count_duplicates(received: list[Received]) -> dict[str, Any]:
    by_id: Counter[str] = Counter()
    by_content: dict[tuple[Any, ...], set[str]] = {}
    for m in received:
        if not m.payload or kind_of(m.topic) == "status":
            continue
        key = msg_key(m)
        by_id[key] += 1
        content = content_key(m)
        if content is not None:
            by_content.setdefault(content, set()).add(key)
    unmarked = {str(k): len(ids) - 1 for k, ids in by_content.items() if len(ids) > 1}
    # The wire topic reports changes: a wire message (new id) with the same state as the one before it
    # is a logical duplicate even with another changed_at (a restart re-publishing the trip as new).
    states: list[tuple[str, int]] = []
    seen: set[str] = set()
    for m in received:
        if m.payload and kind_of(m.topic) == "wire":
            key = msg_key(m)
            if key not in seen:
                seen.add(key)
                states.append((key, int(m.json()["state"])))
    rewire = sum(1 for (_, a), (_, b) in itertools.pairwise(states) if a == b)
    if rewire:
        unmarked["wire: same state re-published"] = rewire
    return {
        "messages": sum(by_id.values()),
        "unique_ids": len(by_id),
        "duplicates_by_id": sum(n - 1 for n in by_id.values()),
        "unmarked_duplicates": sum(unmarked.values()),
        "unmarked_by_content": unmarked,
    }


def _day(t: float) -> float:
    return (t - START_UTC) / DAY


def run_kill_loop(broker: Any, tmp_path: Path, kills: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    days = 64.0
    scenario = storm(days=days)
    real_s = max(40.0, kills * 4.0)  # the storm spans the kills (a restart takes 2-4 s here)
    speed = 55.0 * DAY / real_s
    validity = {"advisory": 10 * DAY, "watch": 10 * DAY, "warning": 10 * DAY}
    overrides: dict[str, dict[str, Any]] = {
        "warning": {"alert": {"validity_s": validity}},
        "mqtt": {"reconnect_max_s": 2},
    }
    site = SubprocessSite(scenario, tmp_path, broker.host, broker.port, speed, overrides)
    watcher = TopicWatcher(
        broker.host, broker.port, "lews/v1/#", protocol=mqtt.MQTTv311, client_id="lews-kill-loop",
        persistent=True,
    ).start()  # fmt: skip
    outage = (kills // 2, kills // 2 + max(1, kills // 5))  # broker down across these restarts
    restarts, broker_down_s = 0, 0.0
    down_since: float | None = None
    try:
        site.start()
        assert site.daemon is not None
        for k in range(kills):
            time.sleep(rng.uniform(0.5, 2.0))
            if k == outage[0]:
                broker.stop()
                down_since = time.monotonic()
            if k == outage[1] and down_since is not None:
                broker.start()
                broker_down_s = time.monotonic() - down_since
                down_since = None
            site.daemon.kill9()
            site.restart(timeout=120.0)  # a loaded 2-core CI machine: starts take 2-40 s
            restarts += 1
        if down_since is not None:
            broker.start()
            broker_down_s = time.monotonic() - down_since
        while _day(site.scenario_time()) < 62.0:
            time.sleep(0.1)
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            status = json.loads((site.state_dir / "status.json").read_text(encoding="utf-8"))
            if not status["publish"]["outbox"]["depth"]:
                break
            time.sleep(0.2)
    finally:
        code = site.stop()
    watcher.wait_for(lambda ms: any(b'"offline"' in m.payload for m in ms if m.topic.endswith("status")), 5)
    watcher.stop()
    received = watcher.snapshot()
    events = alert_events(received)
    wire_trips = [m for m in received if kind_of(m.topic) == "wire" and m.payload and m.json()["state"] == 1]
    report = {
        "kills": restarts,
        "seed": seed,
        "broker_down_s": round(broker_down_s, 1),
        "exit_code": code,
        "alert_events": len(events),
        "lost_events": chain_problems(events),
        "wire_trip_received": bool(wire_trips),
        **count_duplicates(received),
    }
    print("KILL_LOOP " + json.dumps(report, default=str))
    return report


def _check(report: dict[str, Any]) -> None:
    assert report["exit_code"] == 0, report
    assert report["lost_events"] == [], report  # nothing lost: seq gapless over all restarts
    assert report["alert_events"] >= 1 and report["wire_trip_received"], report
    assert report["unmarked_duplicates"] == 0, report["unmarked_by_content"]


@pytest.mark.timeout(900)
def test_kill9_loop_short_form(mosquitto: Any, tmp_path: Path) -> None:
    seed = int(os.environ.get("LEWS_KILL_SEED") or random.SystemRandom().randrange(1 << 30))
    _check(run_kill_loop(mosquitto, tmp_path, kills=3, seed=seed))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill9_loop_long_form(mosquitto: Any, tmp_path: Path) -> None:
    seed = int(os.environ.get("LEWS_KILL_SEED") or random.SystemRandom().randrange(1 << 30))
    kills = int(os.environ.get("LEWS_KILL_LOOP_N", "20"))
    _check(run_kill_loop(mosquitto, tmp_path, kills=kills, seed=seed))
