"""Fault injection on the real daemon mid-storm (SYNTHETIC demo scenario) against a real mosquitto:
the broker stopped for seconds, and the agent killed with SIGKILL and restarted."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from test_daemon_support import alert_events, chain_problems, invalid_payloads, kind_of, per_topic, unique

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.demo.harness import SubprocessSite
from agent.demo.run import SimClock, Simulators, demo_config_data
from agent.demo.scenario import DAY, START_UTC, WIRE_TRIP_DAY, storm
from agent.publish.watch import TopicWatcher

pytestmark = pytest.mark.faults

SCENARIO_REAL_S = 22.0  # the 55 scenario days play in this many real seconds
HISTORICAL_AFTER_S = 1.0


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _day(t: float) -> float:
    return (t - START_UTC) / DAY


def _wait_until(clock: SimClock, day: float) -> None:
    while _day(clock()) < day:
        time.sleep(0.02)


def _persistent_watcher(host: str, port: int, client_id: str) -> TopicWatcher:
    return TopicWatcher(
        host, port, "lews/v1/#", protocol=mqtt.MQTTv311, client_id=client_id, persistent=True
    ).start()


def test_broker_outage_mid_storm_loses_nothing_and_marks_the_backlog_historical(
    mosquitto, tmp_path: Path
) -> None:
    scenario = storm()
    speed = scenario.days * DAY / SCENARIO_REAL_S
    sims = Simulators(scenario, speed)
    data = demo_config_data(
        tmp_path, mosquitto.host, mosquitto.port, sims.gnss_path, sims.bridge_path, speed
    )
    data["mqtt"].update(reconnect_max_s=2)
    data["mqtt"]["outbox"]["historical_after_s"] = HISTORICAL_AFTER_S
    clock = SimClock(speed)
    daemon = Daemon(config_from_dict(data), clock=clock, steps_every_s=3600.0)
    watcher = _persistent_watcher(mosquitto.host, mosquitto.port, "lews-test-outage")
    daemon.start()
    clock.go()
    sims.start()
    try:
        _wait_until(clock, 40.0)  # calm before the storm: stop the broker ...
        mosquitto.stop()
        down = clock()
        _wait_until(clock, 56.0)  # ... through the storm, the surge and the wire trip (~6.5 s real)
        up = clock()
        mosquitto.start()
        deadline = time.monotonic() + 20.0
        while daemon.publisher.outbox.stats()["depth"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.publisher.outbox.stats()["depth"] == 0, "outbox did not drain after the outage"
    finally:
        sims.bridge.stop()
        daemon.stop()
        sims.stop()
    watcher.wait_for(lambda ms: any(b'"offline"' in m.payload for m in ms if m.topic.endswith("status")), 5)
    watcher.stop()

    received = watcher.snapshot()
    assert invalid_payloads(received) == []
    msgs = unique(received)
    counters = daemon.publisher.outbox.counters
    stats = daemon.publisher.stats()["outbox"]
    # Nothing lost: every message the daemon committed to its outbox arrived (once de-duplicated).
    assert stats["dropped"] == {} and counters["coalesced"] == 0
    assert daemon.outbox_depth_at_stop == 0
    assert len(msgs) == counters["enqueued"], (len(msgs), dict(counters), per_topic(msgs))
    assert counters["acked"] == counters["enqueued"]

    # The outage really covered the storm: events and the wire trip were queued while it was down.
    events = alert_events(received)
    assert chain_problems(events) == []
    during = [e for e in events if down <= _t(e["time"]) <= up]
    assert {e["level"] for e in during} >= {2, 3}, [(e["time"], e["level"]) for e in events]
    tripped = [m.json() for m in msgs if kind_of(m.topic) == "wire" and m.json()["state"] == 1]
    assert len(tripped) == 1 and tripped[0]["historical"] is True

    # Historical marking: what waited in the outbox (>= 1.5 real s before the broker was back) is marked,
    # with when it was queued and how long it waited; what went out at once is not.
    margin = (HISTORICAL_AFTER_S + 0.5) * speed
    json_msgs = [m.json() for m in msgs if kind_of(m.topic) != "cap"]
    backlog = [p for p in json_msgs if down <= _t(p["time"]) <= up - margin]
    assert len(backlog) >= 10
    assert all(p["historical"] is True for p in backlog), [p["time"] for p in backlog if not p["historical"]]
    for p in json_msgs:
        if p["historical"]:
            assert p["queued_s"] > HISTORICAL_AFTER_S and p["original_time"]
    live = [p for p in json_msgs if _t(p["time"]) < down - speed]  # sent well before the outage
    assert live and not any(p["historical"] for p in live)
