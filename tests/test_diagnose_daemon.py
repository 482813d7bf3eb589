"""`agent diagnose` and `agent status` while the daemon runs (it owns the ports: diagnose reads its
status.json and the store read-only, and must not open the ports)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.site import Site, diagnose_json, run_agent, statuses
from helpers.wait import wait_until

from agent.config import load_config
from agent.daemon import Daemon


def _status_written_after(status: Path, t: float) -> None:
    wait_until(lambda: status.is_file() and status.stat().st_mtime > t, 30, f"{status} written after {t:.1f}")


@pytest.fixture
def daemon(site: Site) -> Iterator[Daemon]:
    d = Daemon(load_config(site.config))
    d.start()
    status = site.tmp / "state" / "status.json"
    try:
        # running, and the first fixes, rain and wire frames stored; then a status written after that
        wait_until(
            lambda: d.pipeline.stats.get("samples.wire.state") and d.pipeline.stats.get("samples.gnss.e_mm"),
            30,
        )
        _status_written_after(status, time.time())
        yield d
    finally:
        d.stop()


def test_diagnose_reads_the_running_daemon(site: Site, daemon: Daemon) -> None:
    rc, checks = diagnose_json(site.config, "--skip", "system.clock", "--expect-daemon")
    bad = {n: c for n, c in checks.items() if c["status"] != "PASS"}
    assert rc == 0, bad
    assert checks["daemon"]["value"].startswith("running")
    assert "last byte" in checks["serial.bridge"]["value"]  # from status.json, not from a probe
    assert checks["gnss.gnss.satellites"]["value"].startswith("20 satellites")
    assert checks["wire.bridge.loop"]["value"] == "loop intact"
    saved = json.loads((site.tmp / "state" / "diagnose.json").read_text())  # for the status page
    assert {c["name"] for c in saved["checks"]} == set(checks)
    # the daemon kept its ports: no open failure or reconnect caused by diagnose
    ports = daemon.pipeline.counters()["ports"]
    assert all(p["connected"] and p["disconnects"] == 0 for p in ports.values()), ports


@pytest.mark.faults
def test_unplug_while_daemon_runs_fails_only_that_port(site: Site, daemon: Daemon) -> None:
    site.bridge.unplug()
    wait_until(
        lambda: not daemon.pipeline.counters()["ports"]["bridge"]["connected"], 15, "the unplug noticed"
    )
    _status_written_after(site.tmp / "state" / "status.json", time.time())  # the status says so
    rc, checks = diagnose_json(site.config, "--skip", "system.clock")
    assert rc == 2
    assert statuses(checks, "FAIL") == {"serial.bridge"}, checks
    assert "not connected" in checks["serial.bridge"]["value"]


def test_status_of_running_daemon(site: Site, daemon: Daemon) -> None:
    proc = run_agent("status", "--config", str(site.config), "--json")
    assert proc.returncode == 0, proc.stderr
    st: dict[str, Any] = json.loads(proc.stdout)
    assert st["running"] is True and st["published_level"] == 0
    assert {"wire", "rainfall"} <= set(st["sources"])
    assert st["sources"]["wire"]["data_age_s"] is not None and st["sources"]["wire"]["data_age_s"] < 30
    assert st["backend"]["mode"] == "onnxruntime"
    assert st["queue"]["connected"] is True and st["queue"]["depth"] is not None
    assert st["ports"]["bridge"]["connected"] is True
    assert "status" in st["last_messages"]  # the retained birth status from the broker
    human = run_agent("status", "--config", str(site.config))
    assert "daemon running" in human.stdout and "published level" in human.stdout


def test_status_without_daemon_says_so(tmp_path: Path, site: Site) -> None:
    proc = run_agent("status", "--config", str(site.config), "--json")
    assert proc.returncode == 1
    st = json.loads(proc.stdout)
    assert st["running"] is False and "not running" in st["message"]
    # a status file left by a daemon that stopped long ago is STALE, not current
    state = site.tmp / "state"
    state.mkdir(exist_ok=True)
    (state / "status.json").write_text(json.dumps({"published_level": 2, "sources": {}, "time": 0}))
    old = time.time() - 3600
    import os

    os.utime(state / "status.json", (old, old))
    proc = run_agent("status", "--config", str(site.config))
    assert proc.returncode == 1
    assert "STALE" in proc.stdout and "not running" in proc.stdout
