"""What the sensors say: GNSS fix/satellites/accuracy/age, rain counter, seismometer rate/noise, wire loop.

Each check depends on its port's check (``serial.<port>``): when that FAILs, these say "not measured"
(WARN) instead of repeating the failure, so one unplugged device flips exactly one check to FAIL.
Daemon running: counters from status.json and the newest samples from the store (read-only).
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections import Counter
from typing import Any

from agent.diagnose.checks_serial import daemon_port, get_probe, port_failed
from agent.diagnose.model import (
    SILENCE_MARGIN,
    Context,
    Result,
    failed,
    fmt_age,
    not_measured,
    passed,
    warned,
)
from agent.diagnose.probe import PortProbe, SeismicBlockSeen, rms
from agent.sensors.gnss import GateConfig
from agent.sensors.settings import SerialPortConfig

SEISMIC_RATE_TOLERANCE = 0.05  # samples per second of device time may differ this much from the declared rate
SEISMIC_MISSING_FAIL = 0.01  # fraction of samples missing from the index sequence
SEISMIC_NOISE_WARN_FRACTION = 0.1  # noise floor above this fraction of the advisory PGV threshold
WIRE_TEXT = {0: "intact", 1: "TRIPPED", 2: "open circuit", 3: "short circuit"}
FULL_SCALE = {0: 2**15 - 1, 1: 2**31 - 1}


def _gate(ctx: Context) -> GateConfig:
    from agent.sensors.gnss import GnssConfig

    return GnssConfig.from_mapping(ctx.cfg.sensors.gnss.processor_mapping()).gate


def last_sample(ctx: Context, channel: str) -> tuple[float, float] | None:
    """(t, value) of the newest stored sample of ``channel`` (store opened read-only), or None."""
    path = ctx.cfg.store.path
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
        try:
            row = conn.execute(
                "SELECT s.t, s.value FROM samples s JOIN channels c ON c.id = s.channel_id "
                "WHERE c.name = ? ORDER BY s.t DESC LIMIT 1",
                (channel,),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return None if row is None else (float(row[0]), float(row[1]))


def _probe_or_none(ctx: Context, port: SerialPortConfig, name: str) -> PortProbe | Result:
    if port_failed(ctx, port):
        return not_measured(name, f"serial.{port.name}")
    return get_probe(ctx, port)


# ---- GNSS -------------------------------------------------------------------------------------------
def gnss_fix(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"gnss.{port.name}.fix"
    if ctx.daemon_running:
        if port_failed(ctx, port):
            return not_measured(name, f"serial.{port.name}")
        _, dec = daemon_port(ctx, port)
        total, gated = int(dec.get("epochs", 0)), int(dec.get("epochs_gated", 0))
        rejected = {k: int(v) for k, v in dec.get("rejected", {}).items() if v}
        if total == 0:
            return warned(name, "no epoch decoded yet", "wait for the receiver to send positions")
        if gated == 0:
            return failed(
                name, f"0 of {total} epochs pass the gate (rejected: {rejected})", _gate_fix(rejected)
            )
        return passed(name, f"{gated} of {total} epochs pass the gate", rejected=rejected)
    probe = _probe_or_none(ctx, port, name)
    if isinstance(probe, Result):
        return probe
    if not probe.epochs:
        return warned(
            name,
            f"no epoch in {probe.listen_s:g} s",
            f"listen longer (--listen {2.0 / ctx.cfg.sensors.gnss.epoch_rate_hz:g})",
        )
    last = probe.epochs[-1]
    good = [e for e in probe.epochs if e.passed]
    reasons = Counter(e.reason for e in probe.epochs if e.reason)
    value = f"fix type {last.fix_type}, carrier {last.carrier}; {len(good)}/{len(probe.epochs)} epochs pass"
    if not good:
        return failed(name, f"{value} (rejected: {dict(reasons)})", _gate_fix(dict(reasons)))
    return passed(name, value)


def _gate_fix(rejected: dict[str, int]) -> str:
    top = max(rejected, key=lambda k: rejected[k]) if rejected else "unknown"
    return (
        f"most epochs fail '{top}': give the antenna a clear sky view, check the RTK correction link, "
        "or relax sensors.gnss.gate"
    )


def gnss_satellites(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"gnss.{port.name}.satellites"
    minimum = _gate(ctx).min_num_sv
    if ctx.daemon_running:
        last = None if port_failed(ctx, port) else last_sample(ctx, "gnss.num_sv")
        return _judge_sv(name, None if last is None else last[1], minimum, port)
    probe = _probe_or_none(ctx, port, name)
    if isinstance(probe, Result):
        return probe
    values = [e.num_sv for e in probe.epochs if math.isfinite(e.num_sv)]
    return _judge_sv(name, values[-1] if values else None, minimum, port)


def _judge_sv(name: str, sv: float | None, minimum: int, port: SerialPortConfig) -> Result:
    if sv is None:
        return warned(name, "no satellite count reported", f"check the receiver on {port.name} sends NAV-PVT")
    if sv < minimum:
        return failed(name, f"{sv:.0f} satellites (gate needs {minimum})", "clear the antenna's sky view")
    return passed(name, f"{sv:.0f} satellites (gate needs {minimum})")


def gnss_accuracy(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"gnss.{port.name}.accuracy"
    limit = _gate(ctx).max_h_acc_mm
    if ctx.daemon_running:
        last = None if port_failed(ctx, port) else last_sample(ctx, "gnss.h_acc_mm")
        acc = None if last is None else last[1]
    else:
        probe = _probe_or_none(ctx, port, name)
        if isinstance(probe, Result):
            return probe
        values = [e.h_acc_mm for e in probe.epochs if math.isfinite(e.h_acc_mm)]
        acc = values[-1] if values else None
    if acc is None:
        return warned(name, "no accuracy reported", "enable NAV-PVT (hAcc) on the receiver")
    text = f"horizontal accuracy {acc:.1f} mm (gate {limit:g} mm)"
    if acc > limit:
        return failed(name, text, "wait for RTK fixed; check the correction stream and antenna")
    return passed(name, text)


def gnss_fix_age(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"gnss.{port.name}.fix_age"
    period = 1.0 / ctx.cfg.sensors.gnss.epoch_rate_hz
    limit = max(3.0 * period, 5.0)
    if ctx.daemon_running:
        last = None if port_failed(ctx, port) else last_sample(ctx, "gnss.e_mm")
        age = None if last is None else max(0.0, ctx.clock() - last[0])
    else:
        probe = _probe_or_none(ctx, port, name)
        if isinstance(probe, Result):
            return probe
        good = [e.t_rx for e in probe.epochs if e.passed]
        if not good and probe.listen_s < limit:
            return warned(
                name, f"no fixed solution in {probe.listen_s:g} s", f"listen longer (--listen {limit:g})"
            )
        age = ctx.clock() - good[-1] if good else None
    text = f"last fixed solution {fmt_age(age)} ago (limit {limit:g} s)"
    if age is None or age > limit:
        return failed(name, text, "no usable position: check the antenna, RTK corrections and the gate")
    return passed(name, text)


# ---- bridge: rain, seismic, wire -----------------------------------------------------------------
RAIN_ANOMALIES = ("regression", "implausible", "rebaseline")  # agent.sensors.bridge_device.rain_step kinds


def _rain_anomalies(probe: PortProbe, mm_per_tip: float, max_mm_per_h: float) -> dict[str, int]:
    """Run the daemon's own counter rule over the RAIN frames heard; count what it would not believe."""
    from agent.sensors.bridge_device import rain_step
    from firmware_bridge.messages import Rain

    state = None
    bad: Counter[str] = Counter()
    for _t, tips, uptime_s, boot_id in probe.rain:
        decision = rain_step(
            state, boot_id, Rain(tips, uptime_s, 0), mm_per_tip=mm_per_tip, max_mm_per_h=max_mm_per_h
        )
        state = decision.state
        if decision.kind in RAIN_ANOMALIES:
            bad[decision.kind] += 1
    return dict(bad)


def rain_counter(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"rain.{port.name}.counter"
    cfg = ctx.cfg.sensors.rain
    if ctx.daemon_running:
        if port_failed(ctx, port):
            return not_measured(name, f"serial.{port.name}")
        dev = daemon_port(ctx, port)[1].get("device", {})
        frames, kinds = int(dev.get("rain_frames", 0)), dev.get("rain", {})
        bad = {k: int(v) for k, v in kinds.items() if k in RAIN_ANOMALIES and v}
        if frames == 0:
            return warned(name, "no RAIN frame yet", f"the bridge sends one every {cfg.frame_period_s:g} s")
        if any(bad.values()):
            return warned(name, f"{frames} RAIN frames, suspicious: {bad}", "inspect the gauge and its cable")
        return passed(name, f"{frames} RAIN frames, {int(dev.get('rain_tips', 0))} tips counted")
    probe = _probe_or_none(ctx, port, name)
    if isinstance(probe, Result):
        return probe
    if not probe.rain:
        res = warned if SILENCE_MARGIN * cfg.frame_period_s > probe.listen_s else failed
        return res(
            name,
            f"no RAIN frame in {probe.listen_s:g} s (period {cfg.frame_period_s:g} s)",
            f"listen longer (--listen {cfg.frame_period_s * 1.5:g}) or check the bridge firmware",
        )
    bad = _rain_anomalies(probe, ctx.cfg.sensors.rain.mm_per_tip, cfg.max_mm_per_h)
    if bad:
        return failed(
            name,
            f"tip counter not plausible: {bad} (max {cfg.max_mm_per_h:g} mm/h)",
            "a bouncing reed switch, wiring fault or counter reset: inspect the gauge and its cable",
        )
    return passed(name, f"{len(probe.rain)} RAIN frames, counter {probe.rain[-1][1]} tips, plausible")


def seismic_rates(blocks: list[SeismicBlockSeen]) -> dict[str, Any]:
    """Pure: samples missing from the index sequence, and samples per second of device time.

    Judged on the device's own sample index and clock, not on arrival times (a loaded gateway delivers
    blocks in bursts). ``device_hz`` is NaN when the device clock is not set or the span is too short."""
    missing = expected = 0
    first_of_boot: SeismicBlockSeen | None = None
    device_hz = math.nan
    for prev, cur in itertools.pairwise(blocks):
        if cur.boot_id != prev.boot_id:
            continue
        nxt = prev.first_index + len(prev.samples)
        missing += max(0, cur.first_index - nxt)
        expected += max(0, cur.first_index - prev.first_index)
    for b in blocks:
        if first_of_boot is None or b.boot_id != first_of_boot.boot_id:
            first_of_boot = b
        elif (
            b.device_time_ms
            and first_of_boot.device_time_ms
            and b.device_time_ms > first_of_boot.device_time_ms
        ):
            dt_s = (b.device_time_ms - first_of_boot.device_time_ms) / 1000.0
            device_hz = (b.first_index - first_of_boot.first_index) / dt_s
    return {"missing": missing, "expected": expected + (len(blocks[-1].samples) if blocks else 0),
            "device_hz": device_hz}  # fmt: skip


def seismic_rate_noise(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"seismic.{port.name}"
    if ctx.daemon_running:
        if port_failed(ctx, port):
            return not_measured(name, f"serial.{port.name}")
        seis = daemon_port(ctx, port)[1].get("seismic", {})
        dev = daemon_port(ctx, port)[1].get("device", {})
        blocks, clipped = int(dev.get("seismic_blocks", 0)), int(dev.get("seismic_clipped_samples", 0))
        if blocks == 0:
            return passed(name, "no geophone data on this bridge (none fitted or rate 0)")
        if clipped:
            return warned(name, f"{clipped} clipped samples", "lower the geophone gain")
        return passed(name, f"{blocks} blocks, {int(seis.get('samples', 0))} samples, {clipped} clipped")
    probe = _probe_or_none(ctx, port, name)
    if isinstance(probe, Result):
        return probe
    if not probe.seismic:
        return passed(name, f"no SEISMIC block in {probe.listen_s:g} s: no geophone on this bridge")
    last = probe.seismic[-1]
    rates = seismic_rates(probe.seismic)
    sens = ctx.cfg.sensors.seismic.sensitivity_counts_per_m_s
    counts = [float(c) for b in probe.seismic for c in b.samples]
    noise_mm_s = rms(counts) / (sens * (last.gain or 1)) * 1000.0
    clip = FULL_SCALE.get(last.sample_format, 2**31 - 1)
    clipped = sum(1 for c in counts if abs(c) >= clip)
    text = (
        f"declared {last.rate_hz} Hz, device clock {rates['device_hz']:.1f} Hz, "
        f"{rates['missing']} of {rates['expected']} samples missing, "
        f"noise floor {1000 * noise_mm_s:.3f} um/s RMS"
    )
    detail = {**rates, "declared_hz": last.rate_hz, "noise_um_s": 1000 * noise_mm_s}
    if rates["missing"] > SEISMIC_MISSING_FAIL * max(rates["expected"], 1):
        return failed(
            name, text, "blocks are lost on the way: check the baud rate, cable and bridge", **detail
        )
    device_hz = rates["device_hz"]
    if math.isfinite(device_hz) and abs(device_hz - last.rate_hz) > SEISMIC_RATE_TOLERANCE * last.rate_hz:
        return failed(name, text, "the bridge samples at another rate than it declares: check its firmware")
    if rms(counts) == 0.0:
        return failed(name, f"{text}: flat signal", "the geophone is disconnected or dead", **detail)
    if clipped:
        return failed(name, f"{text}, {clipped} clipped", "lower the gain or check the geophone", **detail)
    adv = ctx.cfg.warning.seismic.pgv_mm_s.advisory
    if isinstance(adv, float | int) and noise_mm_s > SEISMIC_NOISE_WARN_FRACTION * float(adv):
        return warned(name, text, "noisy site: move the geophone away from machinery, bury it", **detail)
    return passed(name, text, **detail)


def wire_loop(ctx: Context, port: SerialPortConfig) -> Result:
    name = f"wire.{port.name}.loop"
    period = ctx.cfg.sensors.device.heartbeat_period_s
    if ctx.daemon_running:
        last = None if port_failed(ctx, port) else last_sample(ctx, "wire.state")
        if port_failed(ctx, port):
            return not_measured(name, f"serial.{port.name}")
        state = None if last is None else int(last[1])
    else:
        probe = _probe_or_none(ctx, port, name)
        if isinstance(probe, Result):
            return probe
        if not probe.wire:
            res = warned if SILENCE_MARGIN * period > probe.listen_s else failed
            return res(
                name,
                f"no WIRE frame in {probe.listen_s:g} s (sent with every heartbeat, {period:g} s)",
                f"listen longer (--listen {period * 1.5:g})",
            )
        state = probe.wire[-1][1]
    if state is None:
        return warned(name, "no wire state received yet", f"wait one heartbeat ({period:g} s)")
    text = f"loop {WIRE_TEXT.get(state, f'state {state}')}"
    if state == 0:
        return passed(name, text)
    if state == 1:
        return failed(name, text, "the wire alarm has tripped: inspect the slope NOW, then reset the wire")
    return failed(name, text, "repair the wire loop (open circuit / short): the alarm is blind meanwhile")
