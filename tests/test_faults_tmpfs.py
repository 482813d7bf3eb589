"""Degraded, not dead, on a REAL full filesystem: the daemon's state directory, store and outbox on a
2 MiB tmpfs (mounted by the test; it needs root and skips with the reason otherwise), against a real
mosquitto. The disk is filled by a filler file and by the store's own samples; then a wire trip (a
WIRE frame written to the bridge's pseudo-terminal) must be received by a subscriber within 1 s, the
alert must go out, the daemon must keep running, report "disk full" with the numbers (status and the
retained MQTT status), leave no temporary file, and recover by itself when space returns. The demo
form runs `agent demo --state-dir` on such a filesystem."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import tty
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker
from helpers.wait import wait_until as _wait_until

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features.samples import Sample
from agent.publish.watch import Received, TopicWatcher
from firmware_bridge.codec import FrameEncoder
from firmware_bridge.messages import Wire, WireState

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parent.parent
TINY_MIB = 2


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted at tmp_path/tiny (unmounted after the test)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TINY_MIB}m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _config(root: Path, broker: Broker, bridge: str | None = None) -> dict[str, Any]:
    ports = [] if bridge is None else [{"name": "bridge", "path": bridge, "kind": "bridge"}]
    return {
        "site": {"site": "tiny-site", "node": "gw1"},
        "sensors": {"ports": ports},
        "daemon": {
            "state_dir": str(root / "state"),
            "evaluate_interval_s": 0.05,
            "telemetry_interval_s": 0.2,
        },
        "store": {"path": str(root / "store.sqlite"), "max_backlog": 5_000},  # fits the freed space
        "web": {"port": 0},  # any free port (8080 may be taken)
        "inference": {
            "bundle_dir": str(root / "none"),
            "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub"),
        },
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "status_interval_s": 0.5,
            "outbox": {"path": str(root / "outbox.sqlite")},
        },
    }


def _fill(daemon: Daemon, tiny: Path) -> Path:
    """Fill the filesystem: a filler file up to ~256 KiB free, then the store's own samples."""
    filler = tiny / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, _free(tiny) - 256 * 1024))
    t0 = time.time() - 3600.0
    for k in range(0, 36_000, 500):
        daemon.pipeline.emit("gnss", [Sample(t0 + (k + i) * 0.1, "gnss.e_mm", float(i)) for i in range(500)])
        if daemon.store.stats_snapshot().get("write_errors", 0):
            break
    assert _wait_until(lambda: daemon.store.stats_snapshot().get("write_errors", 0) > 0), "store never full"
    return filler


def _status_of(messages: list[Received]) -> list[dict[str, Any]]:
    return [m.json() for m in messages if m.topic.endswith("/status") and m.payload]


@pytest.fixture
def bridge_pty() -> Iterator[tuple[int, str]]:
    """A pseudo-terminal for the firmware bridge: (master fd the test writes frames to, slave path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _reached(daemon: Daemon, runs: int) -> bool:
    return daemon.evaluate_loop.runs >= runs


def test_full_tmpfs_degrades_publishes_the_wire_within_1s_and_recovers(
    tiny: Path, mosquitto: Broker, bridge_pty: tuple[int, str]
) -> None:
    master, bridge_path = bridge_pty
    encoder = FrameEncoder()
    daemon = Daemon(config_from_dict(_config(tiny, mosquitto, bridge_path)))
    watcher = TopicWatcher(mosquitto.host, mosquitto.port, "lews/v1/#").start()
    daemon.start()
    try:
        assert _wait_until(lambda: daemon.publisher.link.connected.is_set())
        filler = _fill(daemon, tiny)
        assert _wait_until(lambda: daemon.disk.state["state"] == "full"), daemon.disk.state
        # the trip arrives as the bridge sends it: a WIRE frame on the serial port
        t_trip = time.monotonic()
        os.write(
            master, encoder.encode(Wire(WireState.TRIPPED, transitions=1, uptime_s=60, changed_time_ms=0))
        )
        got = watcher.wait_for(
            lambda ms: any(m.topic.endswith("/wire") and m.json().get("state") == 1 for m in ms), 5.0
        )
        latency = time.monotonic() - t_trip
        assert any(m.topic.endswith("/wire") for m in got), "wire trip not published on a full disk"
        logging.getLogger(__name__).info(
            "wire trip on the full tmpfs: pty write -> received %.1f ms", latency * 1e3
        )
        assert latency < 1.0, f"wire trip took {latency:.2f} s on a full disk"
        # the alert goes out too (live when the outbox cannot keep it), and the daemon keeps running
        assert watcher.wait_for(
            lambda ms: any(m.topic.endswith("/alert") and m.payload and m.json()["level"] == 3 for m in ms),
            10.0,
        ), "no level-3 alert on a full disk"
        runs = daemon.evaluate_loop.runs
        assert _wait_until(lambda: daemon.evaluate_loop.runs >= runs + 20)
        assert daemon.fatal is None
        # the long form: LEWS_FULL_DISK_HOLD_S=600 keeps the disk full that long, evaluating all along
        hold_end = time.monotonic() + float(os.environ.get("LEWS_FULL_DISK_HOLD_S", "0"))
        while time.monotonic() < hold_end:
            target = daemon.evaluate_loop.runs + 1
            assert _wait_until(partial(_reached, daemon, target), 30.0), "evaluation stopped"
            assert daemon.fatal is None and daemon.disk.state["state"] == "full"
            time.sleep(5.0)  # pacing of the long hold, not a synchronisation
        disk = daemon.status()["disk"]
        assert disk["state"] == "full" and "disk full" in disk["reason"], disk
        fs = disk["filesystems"][0]
        assert fs["total_bytes"] <= TINY_MIB * 1024 * 1024 and fs["free_bytes"] < 512 * 1024, fs
        assert watcher.wait_for(
            lambda ms: any(
                s["mode"] == "degraded" and "disk full" in (s["reason"] or "") for s in _status_of(ms)
            ),
            5.0,
        ), "retained status does not say disk full"
        # telemetry is shed first (the store's samples cannot be committed, so the telemetry job has
        # nothing to summarise: shed one by hand, as it would be)
        row = daemon.publisher.publish_telemetry(
            "device", {"device.supply_v": 12.1}, window_start=time.time() - 1, window_end=time.time(),
            completeness=None, count=1,
        )  # fmt: skip
        assert row is None and daemon.publisher.counters["telemetry_shed"] >= 1
        assert daemon.publisher.counters["live_not_durable"] >= 1  # what the outbox refused went live
        # space returns: the daemon leaves degraded mode by itself
        filler.unlink()
        assert _wait_until(lambda: daemon.disk.state["state"] == "ok", 20.0), daemon.disk.state
        n = len(watcher.snapshot())
        assert watcher.wait_for(lambda ms: any(s["mode"] != "degraded" for s in _status_of(ms[n:])), 5.0), (
            "status still degraded after space returned"
        )
    finally:
        daemon.stop()
        watcher.stop()
    assert daemon.fatal is None
    leftovers = [p.name for p in tiny.rglob("*") if p.name.endswith((".tmp", ".tmp.npz"))]
    assert leftovers == []


def test_demo_on_a_2mib_state_dir_reaches_level_3(tiny: Path, mosquitto: Broker) -> None:
    """`agent demo --state-dir DIR` (every file of the demo's daemon under DIR) on a 2 MiB tmpfs."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "agent.cli", "demo", "--state-dir", str(tiny), "--duration", "24", "--json",
           "--broker", f"{mosquitto.host}:{mosquitto.port}"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["max_level"] == 3 and summary["wire_messages"] >= 1, summary
    assert (tiny / "state").is_dir() and (tiny / "outbox.sqlite").exists()  # kept under DIR
