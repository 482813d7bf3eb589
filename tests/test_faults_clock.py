"""Clock jumps (NTP step, RTC reset) forwards and backwards under the real daemon, against a real broker.

The daemon runs on a controllable clock (``Daemon(cfg, clock=...)``). Wire-alarm samples enter through
the pipeline's ``emit`` (the path every decoded sample takes: subscribers first, then the store). We check
that a backwards jump is counted and never lowers the published level, that a forwards jump neither
crashes a loop nor re-triggers the alert, and that nothing committed to the outbox or the store is lost.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker
from helpers.mqtt_checks import alert_events, chain_problems, invalid_payloads, unique
from helpers.wait import wait_until

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features.samples import Sample
from agent.publish.watch import TopicWatcher

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
DAY = 86_400.0


class StepClock:
    """A wall clock we can step like a misbehaving NTP/RTC: ``t`` advances only when told to."""

    def __init__(self, t: float) -> None:
        self.t = t
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.t

    def set(self, t: float) -> None:
        with self._lock:
            self.t = t


def _config(tmp_path: Path, broker: Broker) -> dict[str, Any]:
    return {
        "site": {"site": "clock-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.05},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "inference": {
            "bundle_dir": str(tmp_path / "no-bundle"),  # rules-only: the test is about time, not models
            "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub"),
        },
        "warning": {"wire": {"max_age_s": 30 * DAY}},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        },
    }


def _evaluations_after(daemon: Daemon, n: int) -> None:
    target = daemon.counters["evaluations"] + n
    wait_until(lambda: daemon.counters["evaluations"] >= target, 10, "the evaluation loop (stalled?)")


def test_clock_jumps_back_and_forth_hold_the_alert_and_lose_nothing(
    tmp_path: Path, mosquitto: Broker
) -> None:
    clock = StepClock(T0)
    daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto)), clock=clock)
    watcher = TopicWatcher(mosquitto.host, mosquitto.port, "lews/v1/#").start()
    emitted: list[Sample] = []

    def wire(state: int) -> None:
        s = Sample(clock(), "wire.state", float(state))
        emitted.append(s)
        daemon.pipeline.emit("bridge", [s])

    daemon.start()
    try:
        wire(0)
        _evaluations_after(daemon, 3)
        assert daemon._last_level() == 0
        clock.set(T0 + 600.0)
        wire(1)  # the wire trips: level 3 at once
        wait_until(lambda: daemon._last_level() == 3)
        _evaluations_after(daemon, 3)

        clock.set(T0 - 6 * HOUR)  # RTC reset / bad NTP step: six hours back
        wire(1)  # the bridge keeps reporting the tripped wire (heartbeat)
        _evaluations_after(daemon, 10)
        assert daemon.evaluation.engine.state.counters["clock_backwards"] >= 1
        assert daemon._last_level() == 3, "a backwards clock lowered the published level"

        clock.set(T0 + 3 * DAY)  # and three days forwards
        wire(1)
        _evaluations_after(daemon, 10)
        assert daemon._last_level() == 3
        clock.set(T0 + 3 * DAY + 60.0)
        _evaluations_after(daemon, 5)
        assert daemon.fatal is None
        assert all(lp.failures == 0 for lp in daemon.scheduler.loops.values()), {
            lp.name: lp.failures for lp in daemon.scheduler.loops.values()
        }
        wait_until(lambda: daemon.publisher.outbox.stats()["depth"] == 0)
    finally:
        daemon.stop()
    time.sleep(0.5)
    watcher.stop()

    # The published level never went down, not even for one evaluation.
    assert daemon.levels_seen() == [0, 3], daemon.levels_seen()
    # Nothing committed to the outbox was lost; every payload follows its schema.
    received = watcher.snapshot()
    assert invalid_payloads(received) == []
    msgs = unique(received)
    counters = daemon.publisher.outbox.counters
    assert not +daemon.publisher.outbox.dropped
    assert daemon.outbox_depth_at_stop == 0
    assert counters["acked"] == counters["enqueued"] == len(msgs), (dict(counters), len(msgs))
    # One alert, one trigger: the jumps did not re-trigger, resolve or break the event chain.
    events = alert_events(received)
    assert chain_problems(events) == []
    assert [e["event_type"] for e in events].count("trigger") == 1
    assert not any(e["event_type"] == "resolve" for e in events)
    wire_msgs = [m.json() for m in msgs if m.topic.endswith("/wire")]
    assert [w["state"] for w in wire_msgs] == [0, 1]  # changes only, each once
    # Every wire sample reached the store, whatever its timestamp.
    from agent.features.store import Store

    store = Store(config_from_dict(_config(tmp_path, mosquitto)).store)
    try:
        data = store.read_samples(T0 - DAY, T0 + 4 * DAY, ["wire.state"])
        assert data["wire.state"][1].size == len(emitted)
    finally:
        store.close()
