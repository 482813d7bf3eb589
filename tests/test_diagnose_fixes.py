"""`agent diagnose` fix texts match the failure they are shown for: a real pty held by another process,
a path that is not a serial device, and a character device that is no terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agent.diagnose.probe import is_terminal, open_fix, probe_port
from agent.sensors.settings import SensorsConfig, SerialPortConfig

HOLD = (
    "import serial, sys; s = serial.Serial(sys.argv[1], exclusive=True); "
    "print('held', flush=True); sys.stdin.read()"
)


def test_port_held_by_another_process_names_it() -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        port = SerialPortConfig(name="bridge", path=path, kind="bridge")
        probe = probe_port(port, SensorsConfig(ports=[port]), 0.2)
        assert not probe.opened and probe.open_error
        fix = open_fix("bridge", path, probe.open_error)
        assert f"(pid {holder.pid})" in fix and "stop it" in fix
        assert "not a serial device" not in fix
    finally:
        holder.communicate("", timeout=10)
        os.close(master)
        os.close(slave)


def test_not_a_serial_device_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "capture.ubx"
    plain.write_bytes(b"\xb5b")
    for path in (str(plain), "/dev/null"):
        assert not is_terminal(path)
        fix = open_fix("bridge", path, "Could not configure port: (25, 'Inappropriate ioctl for device')")
        assert "is not a serial device" in fix and "sensors.ports 'bridge'" in fix
        assert "holds" not in fix


def test_a_pty_is_a_terminal() -> None:
    master, slave = os.openpty()
    try:
        assert is_terminal(os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
