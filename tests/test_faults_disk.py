"""Store full (store.max_size_mb: SQLite refuses pages, as on a full disk) under the running daemon, against
a real broker: the wire alarm and the alert still go out at once, nothing the outbox accepted is lost,
and every sample the store could not keep is counted (backlog, then counted drops), never silently lost.

Component-level forms: tests/test_store_sqlite.py::test_disk_full_keeps_committed_data_and_backlog_until_room
and tests/test_mqtt_outage.py::test_outbox_disk_full_refuses_new_keeps_accepted_and_recovers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features.samples import Sample
from agent.publish.watch import TopicWatcher

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, broker: Broker) -> dict[str, Any]:
    return {
        "site": {"site": "disk-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.05},
        "store": {"path": str(tmp_path / "store.sqlite"), "max_size_mb": 0.25, "max_backlog": 20_000},
        "web": {"port": 0},  # any free port (8080 may be taken)
        "inference": {
            "bundle_dir": str(tmp_path / "none"),
            "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub"),
        },
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        },
    }


def _fill_store(daemon: Daemon) -> int:
    """An hour of 10 Hz GNSS-like samples (far more than 0.25 MiB holds); wait until the store says full."""
    t0 = time.time() - 3600.0
    sent = 0
    for k in range(0, 36_000, 500):
        batch = [Sample(t0 + (k + i) * 0.1, "gnss.e_mm", float(i)) for i in range(500)]
        daemon.pipeline.emit("gnss", batch)
        sent += len(batch)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not daemon.pipeline.counters()["store"].get("write_errors", 0):
        time.sleep(0.05)
    assert daemon.pipeline.counters()["store"].get("write_errors", 0), "the store never reported being full"
    return sent


def _wire_state_1(messages: list[Any]) -> bool:
    return any(m.topic.endswith("/wire") and m.json().get("state") == 1 for m in messages)


def test_full_store_does_not_delay_the_wire_alarm_and_samples_are_accounted(
    tmp_path: Path, mosquitto: Broker
) -> None:
    daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto)))
    watcher = TopicWatcher(mosquitto.host, mosquitto.port, "lews/v1/#").start()
    daemon.start()
    try:
        sent = _fill_store(daemon)
        t_trip = time.monotonic()
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 1.0)])
        assert _wire_state_1(watcher.wait_for(_wire_state_1, 10)), "wire alarm not published"
        latency = time.monotonic() - t_trip
        assert latency < 2.0, f"the wire alarm took {latency:.2f} s with the store full"
        store_stats = daemon.pipeline.counters()["store"]
    finally:
        daemon.stop()
        watcher.stop()
    # every sample is accounted for: accepted into the store's queue (kept and retried), or counted drops
    dropped = sum(v for k, v in store_stats.items() if k.startswith("dropped"))
    assert store_stats.get("accepted", 0) + dropped >= sent, store_stats
    final = daemon.store.stats_snapshot()
    assert final.get("dropped.closed_uncommitted", 0) > 0  # what the full disk never took is counted at stop


def test_full_store_does_not_stop_the_warning_engine(tmp_path: Path, mosquitto: Broker) -> None:
    daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto)))
    daemon.start()
    try:
        _fill_store(daemon)
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 1.0)])
        deadline = time.monotonic() + 10
        while (daemon._last_level() != 3 or daemon.publisher.outbox.stats()["depth"]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert daemon.fatal is None, daemon.fatal
        assert daemon._last_level() == 3
    finally:
        daemon.stop()
    counters = daemon.publisher.outbox.counters
    assert counters["acked"] == counters["enqueued"] and not +daemon.publisher.outbox.dropped
