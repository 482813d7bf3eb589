"""Serial ports: present by their configured (stable) name, permitted, bytes flowing, frames passing CRC.

Daemon running: from its status.json (it owns the ports; diagnose must not open them). Daemon stopped:
each port is opened and read for ``--listen`` seconds (:mod:`agent.diagnose.probe`).
"""

from __future__ import annotations

from typing import Any

from agent.diagnose.model import SILENCE_MARGIN, Context, Result, Status, failed, fmt_age, passed, warned
from agent.diagnose.probe import PortProbe, open_fix, port_access, probe_port
from agent.sensors.settings import SerialPortConfig

FRAME_ERROR_WARN = 0.01  # fraction of frames failing CRC/structure
FRAME_ERROR_FAIL = 0.20


def expected_period_s(ctx: Context, port: SerialPortConfig) -> float:
    """Longest normal silence of a healthy device on this port (s)."""
    s = ctx.cfg.sensors
    if port.kind == "gnss":
        return 1.0 / s.gnss.epoch_rate_hz
    return min(s.rain.frame_period_s, s.device.heartbeat_period_s)


def get_probe(ctx: Context, port: SerialPortConfig) -> PortProbe:
    return ctx.memo(f"probe:{port.name}", lambda: probe_port(port, ctx.cfg.sensors, ctx.options.listen_s))


def daemon_port(ctx: Context, port: SerialPortConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(reader counters, decoder counters) of ``port`` from the daemon's status."""
    pipe = (ctx.daemon_status or {}).get("pipeline", {})
    return pipe.get("ports", {}).get(port.name, {}), pipe.get("decoders", {}).get(port.name, {})


def frame_counts(port: SerialPortConfig, decoder: dict[str, Any]) -> tuple[int, int]:
    """(frames ok, frames rejected) from a decoder counter tree of the daemon."""
    if port.kind == "gnss":
        return int(decoder.get("frames", 0)), int(decoder.get("errors", 0))
    frames = decoder.get("frames", {})
    errors = frames.get("errors", {})
    return int(frames.get("frames_ok", 0)), int(sum(int(v) for v in errors.values()))


def judge_frames(
    name: str, port: SerialPortConfig, ok: int, bad: int, value: str, /, **detail: Any
) -> Result:
    total = ok + bad
    if ok == 0:
        return failed(
            name,
            f"{value}, but no frame passed the checksum ({bad} rejected)",
            f"wrong device or baud rate on {port.path}: check sensors.ports '{port.name}' (baud {port.baud}) "
            "and the cable",
            **detail,
        )
    ratio = bad / total
    text = f"{value}, {ok} frames ok, {bad} rejected ({100 * ratio:.1f} %)"
    if ratio > FRAME_ERROR_FAIL:
        return failed(name, text, "check the cable, connector and grounding; noise corrupts frames", **detail)
    if ratio > FRAME_ERROR_WARN:
        return warned(name, text, "a few corrupted frames: check the cable and connector", **detail)
    return passed(name, text, **detail)


def _from_probe(ctx: Context, port: SerialPortConfig, name: str) -> Result:
    exists, allowed, device = port_access(port.path)
    if not exists:
        return failed(
            name,
            f"{port.path} not present",
            "plug the device in / check the USB cable; use the stable /dev/serial/by-id/ name in the config",
        )
    if not allowed:
        return failed(
            name,
            f"{port.path} ({device}) not readable+writable by this user",
            "add the agent's user to the 'dialout' group or install systemd/udev rules (docs/deployment.md)",
        )
    probe = get_probe(ctx, port)
    detail = probe.as_dict()
    if not probe.opened:
        return failed(
            name,
            f"cannot open {port.path}: {probe.open_error}",
            open_fix(port.name, port.path, probe.open_error),
        )
    if probe.read_error and probe.bytes == 0:
        return failed(name, f"{port.path} failed while reading: {probe.read_error}", "replug the device")
    if probe.bytes == 0:
        period = expected_period_s(ctx, port)
        value = f"no bytes in {probe.listen_s:g} s on {port.path}"
        if SILENCE_MARGIN * period <= probe.listen_s:
            return failed(name, value, "the device is silent: check its power and wiring", **detail)
        return warned(
            name,
            f"{value} (it may stay silent up to {period:g} s)",
            f"listen longer: agent diagnose --listen {period * 1.5:g}",
            **detail,
        )
    value = f"{probe.bytes} bytes in {probe.listen_s:g} s"
    return judge_frames(name, port, probe.frames_ok, probe.frame_errors, value, **detail)


def _from_daemon(ctx: Context, port: SerialPortConfig, name: str) -> Result:
    reader, decoder = daemon_port(ctx, port)
    detail = {"reader": reader}
    if not reader:
        return failed(name, f"the daemon does not read port {port.name}", "restart the daemon", **detail)
    if not reader.get("connected"):
        err = reader.get("last_error") or "not connected"
        return failed(
            name,
            f"{port.path} not connected ({err})",
            "plug the device in / check the USB cable; the daemon reopens it by itself",
            **detail,
        )
    last = reader.get("last_byte_utc")
    age = None if last is None else max(0.0, ctx.clock() - float(last))
    limit = max(3.0 * expected_period_s(ctx, port), 10.0)
    if age is None or age > limit:
        return failed(
            name,
            f"connected, last byte {fmt_age(age)} ago (expected within {limit:g} s)",
            "the device is silent: check its power and wiring",
            **detail,
        )
    ok, bad = frame_counts(port, decoder)
    return judge_frames(name, port, ok, bad, f"last byte {fmt_age(age)} ago", **detail)


def port_result(ctx: Context, port: SerialPortConfig) -> Result:
    """The port's health (memoised: the sensor checks depend on it)."""
    name = f"serial.{port.name}"

    def compute() -> Result:
        return _from_daemon(ctx, port, name) if ctx.daemon_running else _from_probe(ctx, port, name)

    return ctx.memo(f"port:{port.name}", compute)


def port_failed(ctx: Context, port: SerialPortConfig) -> bool:
    return port_result(ctx, port).status == Status.FAIL
