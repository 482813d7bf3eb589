"""`agent diagnose` end to end against SYNTHETIC simulators on ptys, the demo bundle and a real mosquitto:
all PASS, then each injected fault flips exactly its own check to FAIL (with a fix), and no secret
ever appears in the output or the support archive."""

from __future__ import annotations

import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from helpers.site import Site, copy_bundle, diagnose_json, run_agent, statuses

from agent.publish.outbox import OutboundMessage, Outbox

SKIP_HOST = ("--skip", "system.clock")  # this container has no time-sync daemon to ask (WARN, by design)
SECRET = "pw-" + uuid.uuid4().hex


def _plant_password(site: Site) -> Path:
    pw = site.tmp / "mqtt-password"
    pw.write_text(SECRET + "\n")
    pw.chmod(0o600)
    site.rewrite(**{"mqtt.username": "gw1", "mqtt.password_file": str(pw)})
    return pw


def _only_fail(checks: dict[str, dict[str, Any]], name: str) -> None:
    not_pass = {n: (c["status"], c["value"]) for n, c in checks.items() if c["status"] != "PASS"}
    assert statuses(checks, "FAIL") == {name}, not_pass
    assert checks[name]["fix"], "a FAIL must say what to do"


def test_all_pass_and_no_secret_anywhere(site: Site, tmp_path: Path) -> None:
    _plant_password(site)
    out = tmp_path / "support.tar.gz"
    t0 = time.monotonic()
    proc = run_agent("diagnose", "--config", str(site.config), "--json", *SKIP_HOST, "--bundle", str(out))
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    import json

    doc = json.loads(proc.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert all(set(c) >= {"name", "status", "value", "fix"} for c in doc["checks"])
    assert statuses(checks, "PASS") == set(checks), checks
    for name in ("serial.gnss", "serial.bridge", "gnss.gnss.fix", "gnss.gnss.satellites",
                 "gnss.gnss.accuracy", "gnss.gnss.fix_age", "rain.bridge.counter", "seismic.bridge",
                 "wire.bridge.loop",
                 "bundle.integrity", "bundle.golden", "inference.backend", "broker.connect",
                 "broker.roundtrip", "outbox.depth", "system.disk"):  # fmt: skip
        assert name in checks
    assert "system.clock" not in checks
    assert "100 Hz" in checks["seismic.bridge"]["value"]
    assert "20 satellites" in checks["gnss.gnss.satellites"]["value"]
    assert elapsed < 60
    # the support archive: expected members, no secret in any of them
    with tarfile.open(out) as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())  # type: ignore[union-attr]
    assert {"config.json", "diagnose.json", "store-stats.json", "logs.txt", "manifest.json"} <= names
    assert SECRET.encode() not in blob
    assert b"mqtt-password" in blob  # the path is kept (not secret), its content is not


def test_only_and_skip_and_exit_code_for_warn(site: Site) -> None:
    rc, checks = diagnose_json(site.config, "--only", "system.clock,config")
    assert set(checks) == {"config", "system.clock"}
    assert rc == int(max({"PASS": 0, "WARN": 1, "FAIL": 2}[c["status"]] for c in checks.values()))
    rc, checks = diagnose_json(site.config, "--only", "system", "--skip", "system.clock")
    assert set(checks) == {"system.disk", "system.temperature", "system.power_mode"}
    assert rc == 0


def test_unknown_check_name_is_an_error_listing_the_checks(site: Site) -> None:
    for flag in ("--only", "--skip"):
        proc = run_agent("diagnose", "--config", str(site.config), flag, "nosuchcheck")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "'nosuchcheck'" in proc.stderr
        assert "system.disk" in proc.stderr and "broker.connect" in proc.stderr  # the valid names
        assert "lews-agent diagnose" not in proc.stdout  # no table of zero checks


def test_table_first_and_log_lines_only_with_verbose(site: Site) -> None:
    only = ("--only", "system.disk,bundle.integrity")
    quiet = run_agent("diagnose", "--config", str(site.config), *only)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "lews-agent diagnose" in quiet.stdout
    assert " INFO " not in quiet.stderr and " INFO " not in quiet.stdout
    loud = run_agent("diagnose", "--config", str(site.config), *only, "--verbose")
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert " INFO " in loud.stderr  # bundle verification logs what it checked


@pytest.mark.faults
def test_unplugged_device_fails_only_its_port(site: Site) -> None:
    site.bridge.unplug()
    time.sleep(0.3)  # let the device thread see the cable gone before this process opens new fds
    rc, checks = diagnose_json(site.config, *SKIP_HOST, "--listen", "2")
    assert rc == 2, {n: (c["status"], c["value"]) for n, c in checks.items()}
    _only_fail(checks, "serial.bridge")
    assert "not present" in checks["serial.bridge"]["value"]
    for dependent in ("rain.bridge.counter", "seismic.bridge", "wire.bridge.loop"):
        assert checks[dependent]["status"] == "WARN" and "serial.bridge" in checks[dependent]["value"]
    assert checks["serial.gnss"]["status"] == "PASS"


@pytest.mark.faults
def test_silent_device_fails_only_its_port(site: Site) -> None:
    """The tty is there but nothing arrives (device dead): bytes-flowing fails, with a fix."""
    site.gnss.stop()
    import os
    import tty

    master, slave = os.openpty()  # a present but silent port in place of the receiver
    tty.setraw(slave)
    try:
        site.rewrite(**{"sensors.ports": [
            {"name": "gnss", "path": os.ttyname(slave), "kind": "gnss"},
            {"name": "bridge", "path": site.bridge.port, "kind": "bridge"},
        ]})  # fmt: skip
        rc, checks = diagnose_json(site.config, *SKIP_HOST, "--listen", "2")
    finally:
        os.close(master)
        os.close(slave)
    assert rc == 2, checks
    _only_fail(checks, "serial.gnss")
    assert "no bytes" in checks["serial.gnss"]["value"]


@pytest.mark.faults
def test_stopped_broker_fails_only_connect(site: Site, mosquitto: Any) -> None:
    mosquitto.stop()
    rc, checks = diagnose_json(site.config, *SKIP_HOST, "--listen", "2")
    assert rc == 2
    _only_fail(checks, "broker.connect")
    assert "cannot connect" in checks["broker.connect"]["value"]
    assert checks["broker.roundtrip"]["status"] == "WARN"


@pytest.mark.faults
def test_corrupted_bundle_fails_only_integrity(site: Site, tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "bundle")
    victim = sorted(bundle.rglob("*.onnx"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    site.rewrite(**{"inference.bundle_dir": str(bundle)})
    rc, checks = diagnose_json(site.config, *SKIP_HOST, "--listen", "2")
    assert rc == 2
    _only_fail(checks, "bundle.integrity")
    assert "sha256" in checks["bundle.integrity"]["value"]
    for dependent in ("bundle.golden", "inference.backend", "inference.warmup"):
        assert checks[dependent]["status"] == "WARN"


def _message(i: int, droppable: bool = False) -> OutboundMessage:
    return OutboundMessage(
        topic="lews/v1/demo-site/gw1/alert", payload=b"{}", qos=1, retain=False, priority=0,
        droppable=droppable, msg_id=f"m{i}",
    )  # fmt: skip


@pytest.mark.faults
def test_full_outbox_fails_only_depth(site: Site) -> None:
    site.rewrite(**{"mqtt.outbox.max_messages": 10})
    with Outbox(site.tmp / "outbox.sqlite", max_messages=10) as ob:
        ob.enqueue_many([_message(i) for i in range(12)])  # alerts are never dropped: over the bound
    rc, checks = diagnose_json(site.config, *SKIP_HOST, "--listen", "2")
    assert rc == 2
    _only_fail(checks, "outbox.depth")
    assert "12 queued (max 10)" in checks["outbox.depth"]["value"]


@pytest.mark.faults
def test_old_outbox_message_fails_only_oldest(site: Site) -> None:
    with Outbox(site.tmp / "outbox.sqlite", clock=lambda: time.time() - 3 * 3600) as ob:
        ob.enqueue(_message(1))
    rc, checks = diagnose_json(site.config, *SKIP_HOST, "--listen", "2")
    assert rc == 2
    _only_fail(checks, "outbox.oldest")
    assert "3.0 h" in checks["outbox.oldest"]["value"]


def test_invalid_config_is_one_fail(tmp_path: Path) -> None:
    bad = tmp_path / "agent.toml"
    bad.write_text("[site]\nsite = 'x'\nnot_a_key = 1\n")
    bad.chmod(0o644)
    rc, checks = diagnose_json(bad)
    assert rc == 2
    assert list(checks) == ["config"]
    assert "unknown key" in checks["config"]["value"] and checks["config"]["fix"]
