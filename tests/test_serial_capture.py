"""Raw serial captures: format, ordering, power-loss tails, bad indexes, and real bytes through a pty."""

from __future__ import annotations

import json
import os
import struct
import time
import tty
from pathlib import Path

import pytest

from agent.errors import CaptureError
from agent.sensors.capture import (
    MAGIC,
    CaptureWriter,
    ReadStats,
    iter_capture,
    iter_port,
    iter_records,
    read_index,
)
from agent.sensors.serialport import SerialPortReader


def test_roundtrip_index_and_merge_order(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    with CaptureWriter(cap) as writer:
        gnss = writer.add_port("gnss0", "ubx", device="/dev/serial/by-id/usb-u-blox", baudrate=38400)
        bridge = writer.add_port("bridge", "bridge")
        gnss(100.0, b"\xb5\x62abc")
        bridge(100.5, b"\x00\x01")
        gnss(101.0, b"")
        bridge(100.7, b"\x02\x00")
        gnss(102.0, b"\x00" * 70000)
    index = read_index(cap)
    assert set(index.ports) == {"gnss0", "bridge"}
    assert index.ports["gnss0"].format == "ubx" and index.ports["gnss0"].baudrate == 38400
    assert index.ports["gnss0"].device == "/dev/serial/by-id/usb-u-blox"
    assert index.closed_utc is not None and index.created_utc.endswith("Z")
    doc = json.loads((cap / "index.json").read_text())
    assert doc["ports"]["bridge"] == {
        "file": "bridge.cap",
        "format": "bridge",
        "device": "",
        "baudrate": None,
    }
    assert list(iter_port(cap, "gnss0")) == [(100.0, b"\xb5\x62abc"), (101.0, b""), (102.0, b"\x00" * 70000)]
    merged = [(name, t) for name, t, _ in iter_capture(cap)]
    assert merged == [
        ("gnss0", 100.0),
        ("bridge", 100.5),
        ("bridge", 100.7),
        ("gnss0", 101.0),
        ("gnss0", 102.0),
    ]


def test_file_layout_is_as_documented(tmp_path: Path) -> None:
    with CaptureWriter(tmp_path / "c") as writer:
        writer.add_port("p", "nmea")(1.5, b"$GPGGA")
    raw = (tmp_path / "c" / "p.cap").read_bytes()
    assert raw == MAGIC + struct.pack("<dI", 1.5, 6) + b"$GPGGA"


@pytest.mark.faults
def test_power_loss_tail_is_ignored_and_counted(tmp_path: Path) -> None:
    cap = tmp_path / "cap"
    with CaptureWriter(cap) as writer:
        port = writer.add_port("bridge", "bridge")
        for i in range(5):
            port(float(i), bytes([i + 1]) * 10)
    path = cap / "bridge.cap"
    data = path.read_bytes()
    path.write_bytes(data[:-4])  # the last record lost 4 of its 10 bytes
    stats = ReadStats()
    records = list(iter_records(path, stats))
    assert [t for t, _ in records] == [0.0, 1.0, 2.0, 3.0]
    assert stats.truncated_tail == 12 + 6 and stats.records == 4 and stats.bytes == 40


@pytest.mark.faults
@pytest.mark.parametrize(
    ("index", "match"),
    [
        (None, "not found"),
        ("{not json", "not readable JSON"),
        ('{"format_version": 9, "ports": {}}', "format_version"),
        ('{"format_version": 1, "ports": {"x": {"file": "x.cap", "format": "sirf"}}}', "format"),
        ('{"format_version": 1, "ports": {"x": {"file": "../etc/passwd", "format": "ubx"}}}', "plain file"),
    ],
)
def test_bad_index_is_a_clear_error(tmp_path: Path, index: str | None, match: str) -> None:
    if index is not None:
        (tmp_path / "index.json").write_text(index)
    with pytest.raises(CaptureError, match=match) as err:
        read_index(tmp_path)
    assert err.value.fix


def test_writer_refuses_bad_ports_and_reuse(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "c")
    with pytest.raises(CaptureError):
        writer.add_port("x", "sirf")
    writer.add_port("x", "ubx")
    with pytest.raises(CaptureError):
        writer.add_port("x", "ubx")
    with pytest.raises(CaptureError):
        writer.add_port("../x", "ubx")
    writer.close()
    with pytest.raises(CaptureError, match="already holds"):
        CaptureWriter(tmp_path / "c")
    with pytest.raises(CaptureError, match="does not start"):
        list(iter_records(tmp_path / "c" / "index.json"))


def test_real_receiver_log_through_a_pty_is_captured_byte_exact(tmp_path: Path, shared_data: Path) -> None:
    """The u-blox ZED-F9P log from gpsd's regression suite (mixed UBX + NMEA), written to a pseudo-terminal
    in 1 KiB pieces, read by the port thread, captured, and read back: the same bytes, times ascending."""
    log_path = shared_data / "gnss-receiver-logs" / "gpsd_regress" / "ublox-zed-f9p-hp.log"
    original = log_path.read_bytes()
    master, slave = os.openpty()
    tty.setraw(slave)
    cap = tmp_path / "capture"
    writer = CaptureWriter(cap)
    port = writer.add_port("gnss0", "ubx", device=os.ttyname(slave), baudrate=115200)
    reader = SerialPortReader("gnss0", os.ttyname(slave), port, read_timeout_s=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while not reader.counters.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(0, len(original), 1024):
            os.write(master, original[i : i + 1024])
            time.sleep(0.001)
        while reader.counters.bytes < len(original) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        reader.stop()
        writer.close()
        os.close(master)
        os.close(slave)
    records = list(iter_port(cap, "gnss0"))
    assert b"".join(data for _, data in records) == original
    times = [t for t, _ in records]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60
    assert port.records == len(records) and port.bytes == len(original)
