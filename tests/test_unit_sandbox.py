"""The shipped systemd unit as tested: `agent run` started under the unit's own seccomp filter (read
from systemd/lews-agent.service by tests/unit_sandbox.py) reaches READY on a real sd_notify socket;
the filter the unit used to ship kills it (SIGSYS, mbind); `systemd-analyze verify` finds nothing."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import unit_sandbox

from agent.demo.harness import toml_text
from agent.demo.run import Simulators, demo_config_data
from agent.demo.scenario import DAY, storm
from agent.errors import PublishError
from agent.publish.credentials import read_secret

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "lews-agent.service"
WRAPPER = Path(__file__).resolve().parent / "unit_sandbox.py"
# The line the unit shipped with until issue 13: @resources denied whole, mbind included.
OLD_FILTER = "SystemCallFilter=~@privileged @resources @mount @swap @reboot @obsolete"

why_not = unit_sandbox.available()
needs_sandbox = pytest.mark.skipif(bool(why_not), reason=f"seccomp sandbox unavailable: {why_not}")


def _unit_text(old_filter: bool = False) -> str:
    text = UNIT.read_text(encoding="utf-8")
    if old_filter:
        text = re.sub(r"^SystemCallFilter=~.*$", OLD_FILTER, text, flags=re.M)
        text = re.sub(r"^SystemCallFilter=mbind.*$\n", "", text, flags=re.M)
        text = re.sub(r"^SystemCallErrorNumber=.*$\n", "", text, flags=re.M)
    return text


# The unit runs as User=lews; as root here, the test runs the agent as an unprivileged user too.
RUN_AS = "nobody"


def _sandboxed(unit: Path, *command: str) -> list[str]:
    return [sys.executable, str(WRAPPER), "--strict", "--user", RUN_AS, str(unit), "--", *command]


def _give(path: Path | str) -> None:
    """Hand a file or directory the agent writes to the unprivileged user (when the test is root)."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def test_the_policy_follows_the_unit_file() -> None:
    policy = unit_sandbox.policy_from_unit(_unit_text())
    assert policy.allow_list and policy.native_only
    assert policy.address_families == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert policy.errno_number is not None  # SystemCallErrorNumber=EPERM
    if why_not:
        pytest.skip(why_not)
    # what the unit denies (groups expanded by systemd-analyze) and what it allows back
    for name in ("init_module", "mount", "reboot", "swapon", "setrlimit", "sched_setscheduler"):
        assert policy.denies(name), name
    for name in ("mbind", "read", "openat", "socket", "clone3", "ioctl", "execve"):
        assert not policy.denies(name), name
    assert unit_sandbox.policy_from_unit(_unit_text(old_filter=True)).denies("mbind")


@needs_sandbox
def test_the_wrapper_bites_the_old_filter_kills_numpy_at_import(tmp_path: Path) -> None:
    old = tmp_path / "old.service"
    old.write_text(_unit_text(old_filter=True), encoding="utf-8")
    new = tmp_path / "new.service"
    new.write_text(_unit_text(), encoding="utf-8")
    code = [sys.executable, "-c", "import numpy; print(numpy.ones(3).sum())"]
    died = subprocess.run(_sandboxed(old, *code), capture_output=True, timeout=120)
    assert died.returncode == -signal.SIGSYS, died
    ok = subprocess.run(_sandboxed(new, *code), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip() == "3.0", ok
    # RestrictAddressFamilies= is applied too: a packet socket is refused, a UNIX socket is not
    probe = (
        "import socket\ntry:\n socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "except OSError as e:\n print(e.errno)"
    )
    out = subprocess.run(_sandboxed(new, sys.executable, "-c", probe), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == str(97), out  # EAFNOSUPPORT


def _wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            messages.append(sock.recv(4096).decode())
        if any("READY=1" in m for m in messages) or proc.poll() is not None:
            break
    return messages


@needs_sandbox
def test_agent_run_reaches_ready_under_the_units_seccomp_filter(mosquitto, tmp_path: Path) -> None:
    scenario = storm()
    speed = scenario.days * DAY / 60.0
    sims = Simulators(scenario, speed)
    work = Path(tempfile.mkdtemp(prefix="lews-unit-"))  # pytest's tmp_path is root-only (0700)
    config = work / "agent.toml"
    data = demo_config_data(work, mosquitto.host, mosquitto.port, sims.gnss_path, sims.bridge_path, speed)
    config.write_text(toml_text(data), encoding="utf-8")
    os.chmod(config, 0o640)
    notify_path = work / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    for path in (work, config, notify_path, sims.gnss_path, sims.bridge_path):
        _give(path)
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), LEWS_LOG_FORMAT="json")
    log_path = work / "daemon.log"
    command = _sandboxed(UNIT, sys.executable, "-m", "agent.cli", "run", "--config", str(config))
    sims.start()
    try:
        with open(log_path, "wb") as log_fh:
            proc = subprocess.Popen(command, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        try:
            messages = _wait_ready(sock, proc, timeout=120.0)
            alive = proc.poll() is None
            proc.send_signal(signal.SIGTERM)  # at once: a stop right after READY must be clean
            try:
                code: int | None = proc.wait(60)
            except subprocess.TimeoutExpired:  # a stop that hangs: its stacks go to the log first
                proc.send_signal(signal.SIGUSR1)
                time.sleep(2.0)
                code = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        sims.stop()
        sock.close()
    log = log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
    shutil.rmtree(work, ignore_errors=True)
    assert alive and any("READY=1" in m for m in messages), (proc.returncode, messages, log)
    # a clean stop under the filter too (no SIGSYS on the way down), with STOPPING=1 sent
    assert code == 0, (code, log)


def test_systemd_analyze_verify_finds_nothing(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not found: apt-get install systemd")
    agent = shutil.which("agent") or sys.executable  # ExecStart must name an executable that exists here
    text = _unit_text().replace("/opt/lews-agent/.venv/bin/agent", agent)
    unit = tmp_path / "lews-agent.service"
    unit.write_text(text, encoding="utf-8")
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "" and out.stderr.strip() == "", out
    # the old placement of the restart limit is what verify reported
    bad = tmp_path / "bad" / "lews-agent.service"
    bad.parent.mkdir()
    bad.write_text(
        text.replace("TimeoutStopSec", "StartLimitIntervalSec=600\nTimeoutStopSec"), encoding="utf-8"
    )
    out = subprocess.run([tool, "verify", str(bad)], capture_output=True, text=True, timeout=120)
    assert "Unknown key 'StartLimitIntervalSec' in section [Service]" in out.stderr, out


def test_the_units_credential_fallback_reads_as_empty_and_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (line,) = [v for v in unit_sandbox.unit_settings(_unit_text(), "SetCredential")]
    name, _, value = line.partition(":")
    assert name == "mqtt-password"
    # systemd writes the C-unescaped value as the credential file
    (tmp_path / name).write_bytes(value.encode().decode("unicode_escape").encode())
    os.chmod(tmp_path / name, 0o600)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(PublishError, match="SetCredential= fallback"):
        read_secret(credential=name, what="MQTT password")
