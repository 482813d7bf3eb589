"""`agent config example|validate`, config loading rules, and the JSON log format."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.compat import tomllib
from agent.config import config_from_dict, load_config
from agent.config_example import example_toml
from agent.errors import ConfigError
from agent.logsetup import JsonFormatter


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_example_is_complete_valid_and_described(tmp_path: Path) -> None:
    text = example_toml()
    cfg = config_from_dict(tomllib.loads(text))
    assert cfg.sensors.gnss.reference is not None  # the example names a reference: the daemon can start
    assert {p.kind for p in cfg.sensors.ports} == {"gnss", "bridge"}
    # every field of every section carries a description line
    assert text.count("\n# ") > 150
    path = tmp_path / "agent.toml"
    path.write_text(_agent("config", "example").stdout)
    done = _agent("config", "validate", str(path))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout and "gnss=/dev/lews/gnss" in done.stdout


def test_unknown_keys_and_bad_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[site]\nsite = "Bad Name"\n[mqtt]\nhostname = "x"\n')
    done = _agent("config", "validate", str(path))
    assert done.returncode == 2
    assert "mqtt.hostname: unknown key" in done.stderr
    assert "site.site" in done.stderr and "fix:" in done.stderr
    path.write_text("[site\n")
    assert "not valid TOML" in _agent("config", "validate", str(path)).stderr


def test_world_writable_config_is_refused_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[store]\npath = "data/store.sqlite"\n[daemon]\nstate_dir = "state"\n')
    cfg = load_config(path)
    assert cfg.store.path == tmp_path / "data" / "store.sqlite"
    assert cfg.daemon.state_dir == tmp_path / "state"
    os.chmod(path, 0o666)
    with pytest.raises(ConfigError, match="world-writable") as err:
        load_config(path)
    assert "chmod o-w" in err.value.fix


def test_gnss_port_without_reference_is_refused_at_validation(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[[sensors.ports]]\nname = "gnss"\npath = "/dev/lews/gnss"\nkind = "gnss"\n')
    done = _agent("config", "validate", str(path))
    assert done.returncode == 2 and "sensors.gnss.reference" in done.stderr


def test_json_log_lines_parse() -> None:
    rec = logging.LogRecord("agent.x", logging.ERROR, __file__, 1, "broker %s down", ("b1",), None)
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["level"] == "ERROR" and doc["message"] == "broker b1 down" and doc["time"].endswith("+00:00")
