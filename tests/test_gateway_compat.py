"""The gateway runtime on Python 3.10 (JetPack 6) and the Jetson unit/udev bits of issue 14.

Runs in both venvs of `make test`; under 3.10 it is what proves the compat helpers work there.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from pathlib import Path

import pytest

from agent.compat import UTC, fromisoformat, level_names, tomllib
from agent.logsetup import JournalPriority, stderr_is_journal
from agent.sdnotify import Notifier
from firmware_bridge.errors import FrameErrorKind

REPO = Path(__file__).resolve().parent.parent


def test_compat_helpers_behave_like_the_311_spellings() -> None:
    t = fromisoformat("2017-01-15T06:30:00Z")
    assert t.tzinfo is not None and t.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert t.timestamp() == 1484461800.0 and fromisoformat("2017-01-15T06:30:00+00:00") == t
    assert UTC.utcoffset(None).total_seconds() == 0
    assert level_names()["WARNING"] == logging.WARNING and "NOPE" not in level_names()
    assert tomllib.loads('a = 1\n[b]\nc = "x"\n') == {"a": 1, "b": {"c": "x"}}
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("a = ")


def test_frame_error_kind_prints_as_its_value_like_a_strenum() -> None:
    kind = FrameErrorKind.BAD_CRC
    assert str(kind) == "bad_crc" and f"{kind}" == "bad_crc" and kind == "bad_crc"
    assert FrameErrorKind("duplicate") is FrameErrorKind.DUPLICATE


def test_no_311_only_spellings_in_the_gateway_runtime() -> None:
    """A cheap guard beside `mypy --python-version 3.10`: the names that broke 3.10 before issue 14,
    in the runtime and in the test modules the 3.10 gateway run collects."""
    pattern = re.compile(
        r"^\s*import tomllib|from enum import .*StrEnum|getLevelNamesMapping|\bdt\.UTC\b|"
        r"from datetime import .*\bUTC\b|from typing import .*\bSelf\b|except\*|TaskGroup\(",
        re.M,
    )
    from helpers.toolchain import TOOLCHAIN_IMPORT

    gateway_tests = [
        p for p in sorted((REPO / "tests").rglob("*.py")) if not TOOLCHAIN_IMPORT.search(p.read_text("utf-8"))
    ]
    files = [p for d in ("agent", "firmware_bridge") for p in sorted((REPO / d).rglob("*.py"))]
    hits = [
        f"{p.relative_to(REPO)}: {m.group(0).strip()}"
        for p in [*files, *gateway_tests]
        if p.name not in ("compat.py", "test_gateway_compat.py")
        for m in pattern.finditer(p.read_text(encoding="utf-8"))
    ]
    assert hits == []


def test_requires_python_and_markers_cover_310_to_312() -> None:
    with open(REPO / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    assert project["requires-python"] == ">=3.10,<3.13"
    deps = project["dependencies"]
    for name in ("numpy", "onnxruntime", "matplotlib", "typer"):
        pins = [d for d in deps if d.split("==")[0] == name]
        assert len(pins) == 2 and any("< '3.11'" in d for d in pins) and any(">= '3.11'" in d for d in pins)
    assert "tomli==2.5.0; python_version < '3.11'" in deps
    assert "torch" not in " ".join(deps)


def test_log_lines_carry_their_journald_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = JournalPriority(logging.Formatter("%(levelname)s %(message)s"))
    lines = [
        fmt.format(logging.LogRecord("x", lvl, __file__, 1, "m", None, None))
        for lvl in (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)
    ]
    assert lines == ["<2>CRITICAL m", "<3>ERROR m", "<4>WARNING m", "<6>INFO m", "<7>DEBUG m"]
    st = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    assert stderr_is_journal()
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # stderr redirected elsewhere
    assert not stderr_is_journal()


def test_start_asks_systemd_for_more_time_on_a_real_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(10)
        assert Notifier(str(path)).extend_timeout(why="verifying the model bundle")
        msg = server.recv(4096).decode()
    assert msg == "EXTEND_TIMEOUT_USEC=300000000\nSTATUS=verifying the model bundle"


def _unit(key: str) -> list[str]:
    text = (REPO / "systemd" / "lews-agent.service").read_text(encoding="utf-8")
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def test_unit_has_the_jetson_gpu_groups_and_r36_device_nodes() -> None:
    assert "video" in _unit("SupplementaryGroups")[0].split()
    allowed = {v.split()[0] for v in _unit("DeviceAllow")}
    assert {
        "/dev/nvmap",
        "/dev/nvgpu/igpu0/ctrl",
        "/dev/nvgpu/igpu0/as",
        "/dev/nvgpu/igpu0/channel",
    } <= allowed
    assert _unit("SyslogLevelPrefix") == ["yes"] and _unit("Type") == ["notify"]


def test_udev_rules_name_ports_by_serial_and_keep_modemmanager_off() -> None:
    rules = [
        ln
        for ln in (REPO / "systemd" / "99-lews-serial.rules").read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    naming = [r for r in rules if "SYMLINK+=" in r]
    assert naming and all('ATTRS{serial}=="' in r for r in naming)  # two FTDI adapters cannot swap
    assert all('ENV{ID_MM_DEVICE_IGNORE}="1"' in r for r in rules if "lews/bridge" in r)
    assert any('ATTRS{idVendor}=="1546"' in r and "ID_MM_DEVICE_IGNORE" in r for r in rules)  # u-blox


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="checks the 3.10 gateway venv itself")
def test_the_310_venv_is_a_gateway_install_without_torch() -> None:
    import importlib.util

    assert importlib.util.find_spec("torch") is None
    import numpy
    import onnxruntime

    assert numpy.__version__ == "2.2.6" and onnxruntime.__version__ == "1.23.2"


@pytest.mark.skipif(sys.version_info >= (3, 11), reason="the toolchain runs on 3.11+; this checks 3.10")
def test_the_toolchain_cli_says_plainly_that_it_needs_311() -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "export.cli", "data", "synth", "series", "--out", "/nonexistent/x.csv"],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert (
        proc.returncode == 2 and "needs Python 3.11 or 3.12" in proc.stderr and "Traceback" not in proc.stderr
    )
