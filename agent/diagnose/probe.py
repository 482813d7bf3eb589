"""Listen to one serial port for a few seconds (only when the daemon does not own it) and summarise.

The same decoders as the daemon: GNSS bytes go through :class:`agent.sensors.gnss.GnssProcessor`
(framer checksum + epoch gate), bridge bytes through :class:`firmware_bridge.reader.FrameDecoder`
(COBS + CRC-32C). Times of arrival are wall-clock (``time.time()``) so ages do not depend on the
device's clock.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any

import serial

from agent.sensors.settings import SensorsConfig, SerialPortConfig

log = logging.getLogger(__name__)


@dataclass
class GnssEpochSeen:
    t_rx: float  # wall-clock arrival
    passed: bool
    reason: str | None
    fix_type: int
    carrier: int
    num_sv: float
    h_acc_mm: float


@dataclass(frozen=True)
class SeismicBlockSeen:
    t_rx: float  # wall-clock arrival
    first_index: int  # samples since boot
    device_time_ms: int  # 0: device clock not set
    rate_hz: int
    gain: int
    sample_format: int
    boot_id: int
    samples: tuple[int, ...]


@dataclass
class PortProbe:
    """What a few seconds on one port showed."""

    name: str
    path: str
    kind: str
    listen_s: float
    opened: bool = False
    open_error: str = ""
    bytes: int = 0
    first_byte_t: float | None = None
    last_byte_t: float | None = None
    read_error: str = ""
    frames_ok: int = 0
    frame_errors: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    # gnss
    epochs: list[GnssEpochSeen] = field(default_factory=list)
    # bridge: (t_rx, message) per frame type
    rain: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, tips, uptime_s, boot_id)
    wire: list[tuple[float, int, int]] = field(default_factory=list)  # (t, state, transitions)
    seismic: list[SeismicBlockSeen] = field(default_factory=list)
    heartbeats: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "port": self.name,
            "path": self.path,
            "kind": self.kind,
            "listen_s": self.listen_s,
            "opened": self.opened,
            "open_error": self.open_error,
            "bytes": self.bytes,
            "frames_ok": self.frames_ok,
            "frame_errors": self.frame_errors,
            "errors_by_kind": self.errors_by_kind,
            "epochs": len(self.epochs),
            "rain_frames": len(self.rain),
            "wire_frames": len(self.wire),
            "seismic_blocks": len(self.seismic),
            "heartbeats": self.heartbeats,
        }


class _GnssSink:
    def __init__(self, cfg: SensorsConfig, probe: PortProbe) -> None:
        from agent.sensors.gnss import GnssConfig, GnssProcessor

        self.probe = probe
        mapping = cfg.gnss.processor_mapping()
        self.proc = GnssProcessor(GnssConfig.from_mapping(mapping), keep_epochs=True)

    def feed(self, t: float, data: bytes) -> None:
        self.proc.feed(data)
        for ep in self.proc.epochs:
            self.probe.epochs.append(
                GnssEpochSeen(t, ep.passed, ep.reason, ep.fix_type, ep.carrier, ep.num_sv, ep.h_acc_mm)
            )
        self.proc.epochs.clear()

    def close(self) -> None:
        c = self.proc.framer.counters
        self.probe.frames_ok = c.frames
        self.probe.frame_errors = c.errors
        self.probe.errors_by_kind = {k: v for k, v in c.errors_by_kind.items() if v}


class _BridgeSink:
    def __init__(self, probe: PortProbe) -> None:
        from firmware_bridge.reader import FrameDecoder

        self.probe = probe
        self.frames = FrameDecoder(name=probe.name)

    def feed(self, t: float, data: bytes) -> None:
        from firmware_bridge.messages import Heartbeat, Rain, Seismic, Wire

        for frame in self.frames.decode(data):
            msg = frame.message
            if isinstance(msg, Rain):
                self.probe.rain.append((t, msg.tips, msg.uptime_s, frame.boot_id))
            elif isinstance(msg, Wire):
                self.probe.wire.append((t, int(msg.state), msg.transitions))
            elif isinstance(msg, Seismic):
                self.probe.seismic.append(
                    SeismicBlockSeen(
                        t, msg.first_index, msg.device_time_ms, msg.rate_hz, msg.gain,
                        int(msg.sample_format), frame.boot_id, msg.samples,
                    )
                )  # fmt: skip
            elif isinstance(msg, Heartbeat):
                self.probe.heartbeats += 1

    def close(self) -> None:
        c = self.frames.counters
        self.probe.frames_ok = c.frames_ok
        self.probe.frame_errors = c.error_total()
        self.probe.errors_by_kind = {k.value: v for k, v in c.errors.items() if v}


def probe_port(port: SerialPortConfig, cfg: SensorsConfig, listen_s: float) -> PortProbe:
    """Open ``port`` exclusively, read for ``listen_s`` seconds, decode; never raises for device faults."""
    probe = PortProbe(port.name, port.path, port.kind, listen_s)
    sink: _GnssSink | _BridgeSink = _GnssSink(cfg, probe) if port.kind == "gnss" else _BridgeSink(probe)
    try:
        dev = serial.Serial(port.path, baudrate=port.baud, timeout=0.1, exclusive=True)
    except (OSError, serial.SerialException, ValueError) as exc:
        probe.open_error = str(exc)
        return probe
    probe.opened = True
    end = time.monotonic() + listen_s
    try:
        while time.monotonic() < end:
            try:
                waiting = dev.in_waiting
                data = dev.read(waiting if waiting else 1)
            except (OSError, serial.SerialException) as exc:
                probe.read_error = str(exc)
                break
            if not data:
                continue
            t = time.time()
            probe.bytes += len(data)
            probe.first_byte_t = probe.first_byte_t if probe.first_byte_t is not None else t
            probe.last_byte_t = t
            try:
                sink.feed(t, bytes(data))
            except Exception as exc:  # a decoder bug: say so in the result instead of crashing
                log.exception("decoder of %s failed", port.name)
                probe.read_error = f"decoder raised {type(exc).__name__}: {exc}"
                break
    finally:
        try:
            dev.close()
        except (OSError, serial.SerialException):
            log.debug("closing %s failed", port.path, exc_info=True)
    sink.close()
    return probe


def is_terminal(path: str) -> bool:
    """Whether ``path`` is a terminal device (a serial port, USB-serial adapter or pty)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return stat.S_ISCHR(os.stat(path).st_mode) if os.path.exists(path) else False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def holders(path: str) -> list[str]:
    """``"NAME (pid N)"`` of the processes that have ``path`` open (from /proc; best effort)."""
    target = os.path.realpath(path)
    found: list[str] = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
                    found.append(f"{fh.read().strip()} (pid {pid})")
        except OSError:
            continue
    return found


def open_fix(port_name: str, path: str, error: str) -> str:
    """What to do about a port that exists and is permitted but does not open (pure of the probe)."""
    if not is_terminal(path):
        return (
            f"{path} is not a serial device: set sensors.ports '{port_name}' path to the receiver's or "
            "bridge's port (a /dev/serial/by-id/ name)"
        )
    if "lock" in error.lower() or "busy" in error.lower():
        others = [h for h in holders(path) if not h.endswith(f"(pid {os.getpid()})")]
        who = ", ".join(others) if others else "another program"
        return f"{who} holds {path}: stop it (agent diagnose reads ports only while the daemon is stopped)"
    return f"check the device on {path} and its driver (dmesg); replug the adapter"


def port_access(path: str) -> tuple[bool, bool, str]:
    """(exists, read+write permitted, what the path resolves to)."""
    exists = os.path.exists(path)
    return exists, exists and os.access(path, os.R_OK | os.W_OK), os.path.realpath(path) if exists else ""


def rms(values: list[float]) -> float:
    if not values:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
