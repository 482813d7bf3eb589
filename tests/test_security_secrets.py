"""Secrets and key files of the running daemon, against a real password-protected mosquitto.

- world-writable key files are refused: the bundle public key (the agent would trust anyone's bundle: it
  runs rules-only and says why), the MQTT password file and an HMAC command key (the daemon refuses to
  start, naming the file and the chmod that fixes it);
- a planted broker password and command key never reach the logs (DEBUG level, paho's log included),
  status.json, `agent status --json`, or any file the daemon writes in its state dir, store or outbox.

Related, elsewhere: diagnose output and support archive (tests/test_diagnose_cli.py), TLS verification
with a configured CA (tests/test_mqtt_security.py), cmd/ signing and rate limit (tests/test_mqtt_commands.py).
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker, free_port, running_broker
from typer.testing import CliRunner

from agent.cli import _register_all, app
from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.errors import LewsError
from agent.features.samples import Sample

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "bundles" / "demo"
PUBKEY = REPO / "bundles" / "demo-keys" / "signing.pub"
PASSWORD = "pw-" + secrets.token_hex(12)
CMD_KEY = secrets.token_hex(32)


@pytest.fixture
def auth_broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto that only lets user `gw1` with PASSWORD in (passwords made by mosquitto_passwd -b)."""
    pwfile = tmp_path / "mosq-passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "gw1", PASSWORD], check=True, capture_output=True
    )
    port = free_port()
    settings = f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pwfile}\n"
    with running_broker(tmp_path, "auth", port, settings) as broker:
        yield broker


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _config(tmp_path: Path, broker: Broker, pubkey: Path = PUBKEY) -> dict[str, Any]:
    return {
        "site": {"site": "sec-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.05},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "inference": {"bundle_dir": str(BUNDLE), "public_key": str(pubkey)},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "username": "gw1",
            "password_file": str(_private(tmp_path / "mqtt-password", PASSWORD)),
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            "commands": {"keys": [{"key_id": "ops1", "file": str(_private(tmp_path / "ops1.key", CMD_KEY))}]},
        },
    }


def _all_bytes_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.faults
def test_no_secret_in_logs_status_or_state_files(
    tmp_path: Path, auth_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = _config(tmp_path, auth_broker)
    conf_file = tmp_path / "agent.toml"
    conf_file.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[store]\npath = "{tmp_path / "store.sqlite"}"\n'
    )
    daemon = Daemon(config_from_dict(data))
    daemon.start()
    try:
        assert daemon.publisher.link.connected.wait(10), daemon.publisher.stats()
        daemon.pipeline.emit("bridge", [Sample(time.time(), "wire.state", 1.0)])  # an alert goes out
        deadline = time.monotonic() + 10
        while (daemon._last_level() != 3 or daemon.publisher.outbox.stats()["depth"]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert daemon._last_level() == 3 and daemon.publisher.outbox.stats()["depth"] == 0
        _register_all()
        status_out = CliRunner().invoke(app, ["status", "--config", str(conf_file), "--json"])
    finally:
        daemon.stop()
    assert status_out.exit_code == 0, status_out.output  # the daemon's fresh status was read
    assert json.loads(status_out.output)["running"] is True
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert len(caplog.records) > 10, "no log records captured"
    for secret in (PASSWORD, CMD_KEY):
        assert secret not in logs
        assert secret not in status_out.output
        assert secret.encode() not in _all_bytes_under(tmp_path / "state")  # status.json, bundles, ...
        assert secret.encode() not in (tmp_path / "store.sqlite").read_bytes()
        assert secret.encode() not in (tmp_path / "outbox.sqlite").read_bytes()
    status = json.loads((tmp_path / "state" / "status.json").read_text("utf-8"))
    assert status["published_level"] == 3 and status["publish"]  # the scan looked at a real status


@pytest.mark.faults
def test_world_writable_bundle_public_key_is_not_trusted(tmp_path: Path, auth_broker: Broker) -> None:
    key = tmp_path / "signing.pub"
    key.write_bytes(PUBKEY.read_bytes())
    key.chmod(0o666)
    daemon = Daemon(config_from_dict(_config(tmp_path, auth_broker, pubkey=key)))
    daemon.start()
    try:
        st = daemon.models.status()
        assert st["mode"] == "rules_only"  # the bundle is not trusted with a key anyone could replace
        assert any("writable by every user" in r for r in st["fallback_reasons"]), st["fallback_reasons"]
    finally:
        daemon.stop()


@pytest.mark.faults
@pytest.mark.parametrize("which", ["mqtt-password", "ops1.key"])
@pytest.mark.parametrize("mode", [0o666, 0o602, 0o644])
def test_world_writable_or_readable_secret_files_stop_the_daemon(
    tmp_path: Path, auth_broker: Broker, which: str, mode: int
) -> None:
    data = _config(tmp_path, auth_broker)
    (tmp_path / which).chmod(mode)
    with pytest.raises(LewsError) as err:
        Daemon(config_from_dict(data)).start()
    text = str(err.value)
    assert str(tmp_path / which) in text and "by every user" in text and "chmod 600" in err.value.fix
    assert PASSWORD not in text and CMD_KEY not in text
