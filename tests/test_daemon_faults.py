"""Fault injection on the real daemon mid-storm (SYNTHETIC demo scenario) against a real mosquitto:
the broker stopped for seconds, and the agent killed with SIGKILL and restarted."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers.mqtt_checks import alert_events, chain_problems, invalid_payloads, kind_of, per_topic, unique

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.demo.harness import SubprocessSite
from agent.demo.run import SimClock, Simulators, demo_config_data
from agent.demo.scenario import DAY, START_UTC, WIRE_TRIP_DAY, storm
from agent.publish.topics import TOPICS
from agent.publish.watch import TopicWatcher

pytestmark = pytest.mark.faults

SCENARIO_REAL_S = 60.0  # the 55 scenario days play in this many real seconds (an evaluation ~1 s)
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


# Wall-clock paced (55 scenario days in 60 s): on a loaded 2-core machine the outbox did not always
# drain within the deadline after the outage (CI on 2026-12-07), so this long form runs with
# `make test-slow`; broker outages in CI: tests/test_kill_loop.py (broker down across kills) and
# tests/test_mqtt_outage.py.
@pytest.mark.slow
def test_broker_outage_mid_storm_loses_nothing_and_marks_the_backlog_historical(
    mosquitto, tmp_path: Path
) -> None:
    scenario = storm()
    speed = scenario.days * DAY / SCENARIO_REAL_S
    sims = Simulators(scenario, speed)
    data = demo_config_data(tmp_path, mosquitto.host, mosquitto.port, sims.gnss_path, sims.bridge_path, speed)
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
    # Nothing lost: every message the daemon committed to its outbox arrived (once de-duplicated), except
    # those a newer one replaced while unsent on a "latest value" topic (riskmap: coalesced, counted).
    assert not +daemon.publisher.outbox.dropped
    # (A riskmap already in flight when a newer one replaces it is counted as coalesced and still
    # arrives: hence a range, not an equality, when riskmaps coalesced. What the final evaluation at
    # stop() queued and the broker had not acknowledged yet stays in the outbox for the next start.)
    left = daemon.outbox_depth_at_stop
    assert 0 <= left <= 3
    floor = counters["enqueued"] - counters["coalesced"] - left
    assert floor <= len(msgs) <= counters["enqueued"], (len(msgs), dict(counters), per_topic(msgs))
    assert counters["acked"] >= floor
    coalescing = {spec.suffix for spec in TOPICS.values() if spec.coalesce}
    assert counters["coalesced"] == 0 or coalescing <= {"riskmap", "status"}

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


def _outbox_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def _status(site: SubprocessSite) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((site.state_dir / "status.json").read_text(encoding="utf-8"))
    return data


# Wall-clock paced across two processes (an anchored SimClock): with evaluations taking ~1 s real at this
# compression, a lagging evaluation can raise an alert on a background shower (seen: day 13), so the
# one-alert assertion depends on machine load. The kill -9 guarantees (nothing lost, no unmarked
# duplicate) run in CI through tests/test_kill_loop.py; this long form runs with `make test-slow`.
@pytest.mark.slow
def test_kill9_mid_storm_loses_no_alert_and_resumes_the_alert(mosquitto, tmp_path: Path) -> None:
    seed = int(os.environ.get("LEWS_KILL_SEED") or random.SystemRandom().randrange(1 << 30))
    kill_day = random.Random(seed).uniform(45.0, 53.0)  # an alert is open: storm, surge, before the trip
    why = f"seed {seed}, SIGKILL at scenario day {kill_day:.2f} (log: {tmp_path / 'daemon.log'})"
    # 64 days: the devices keep running after the 55 storm days, so a late kill still has a restarted
    # daemon reading live frames (a restart takes 2-4 real s = 4-7 scenario days at this compression).
    scenario = storm(days=64.0)
    speed = 55.0 * DAY / SCENARIO_REAL_S
    # A restart takes 2-4 real seconds: 4-7 scenario days at this compression, with no sensor data read.
    # Scale the alert validity (26 h: a level expires when nothing re-confirms it) as the demo scales its
    # freshness limits, so the ongoing alert is expected to survive the restart.
    validity = {"advisory": 10 * DAY, "watch": 10 * DAY, "warning": 10 * DAY}
    overrides = {"warning": {"alert": {"validity_s": validity}}}
    site = SubprocessSite(scenario, tmp_path, mosquitto.host, mosquitto.port, speed, overrides)
    watcher = _persistent_watcher(mosquitto.host, mosquitto.port, "lews-test-kill9")
    try:
        site.start()
        assert site.daemon is not None
        while _day(site.scenario_time()) < kill_day:
            time.sleep(0.01)
        level_before = _status(site)["published_level"]
        site.daemon.kill9()
        restarted = time.time()
        site.restart()
        # A restart takes 2-4 real s here (= 4-7 scenario days): the trip may come before, during or after
        # it. Either way the restarted daemon must read the tripped wire and publish it.
        watcher.wait_for(
            lambda ms: any(
                m.t > restarted and kind_of(m.topic) == "wire" and b'"state":1,' in m.payload for m in ms
            ),
            20.0,
        )
        while _day(site.scenario_time()) < 62.0:
            time.sleep(0.1)
        deadline = time.monotonic() + 15.0
        while _status(site)["publish"]["outbox"]["depth"] and time.monotonic() < deadline:
            time.sleep(0.1)
        final = _status(site)
    finally:
        code = site.stop()
    watcher.wait_for(lambda ms: any(b'"offline"' in m.payload for m in ms if m.topic.endswith("status")), 5)
    watcher.stop()
    assert code == 0, why

    # The restarted daemon drained what the killed one left, and nothing is left now.
    assert final["publish"]["outbox"]["depth"] == 0, why
    # At SIGTERM the link waits only for messages already in flight: what the final evaluation queued
    # a moment before may stay in the outbox (kept, sent at the next start), never more than that.
    assert _outbox_rows(site.outbox_path) <= 3, why
    assert final["daemon"].get("engine_state_unreadable", 0) == 0, why

    received = watcher.snapshot()
    assert invalid_payloads(received) == [], why
    events = alert_events(received)
    # No event lost and no second trigger for the ongoing alert: the global seq is gapless, each
    # alert's events link to the previous one, and a new alert starts only after a resolve.
    assert chain_problems(events) == [], why
    assert level_before is not None and level_before >= 1, why
    story = [(round(_day(_t(e["time"])), 2), e["event_type"], e["level"], e["summary"][:90]) for e in events]
    assert len({e["alert_id"] for e in events if e["event_type"] == "trigger"}) == 1, (why, story)
    # No level 3 lost: the wire trip (possibly read only after the restart) gives a level-3 event naming
    # the wire. (Which source raised level 3 first is the storm test's business: after a multi-day data
    # gap the inverse-velocity fit may get there first.)
    wire3 = [
        e
        for e in events
        if e["level"] == 3
        and _day(_t(e["time"])) >= WIRE_TRIP_DAY
        and "wire" in e["event"]["explanation"]["contributing"]
    ]
    assert wire3, (why, story)
    tripped = [m.json() for m in unique(received) if kind_of(m.topic) == "wire" and m.json()["state"] == 1]
    assert tripped and all(w["level"] == 3 for w in tripped), why
    retained_alerts = [m.json() for m in unique(received) if kind_of(m.topic) == "alert"]
    assert retained_alerts[-1]["level"] == 3, why
    assert "wire" in retained_alerts[-1]["explanation"]["contributing"], why
