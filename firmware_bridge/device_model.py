"""The scenario-driven microcontroller that speaks the bridge protocol (see firmware_bridge/simulator.py).

:class:`DeviceModel` is the device itself, advanced in scenario time (pure: no I/O, no wall clock);
:func:`generate_frames` runs it over a whole scenario; :class:`firmware_bridge.pty_device.PtyDevice` puts
it on a pseudo-terminal in real time or compressed time and answers COMMAND frames. The model keeps a
:class:`SimTruth` of what it meant to report, so tests compare what the gateway decoded with what the
device intended.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from firmware_bridge.codec import encode_frame
from firmware_bridge.messages import (
    Ack,
    Capability,
    Command,
    CommandCode,
    Heartbeat,
    Hello,
    Message,
    Nack,
    NackReason,
    Rain,
    SampleFormat,
    Seismic,
    Wire,
    WireState,
)
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import Scenario

log = logging.getLogger(__name__)

SEISMIC_RATES = (50, 100, 200)
_LIMITS = {SampleFormat.INT16: 2**15 - 1, SampleFormat.INT32: 2**31 - 1}


@dataclass
class SimTruth:
    """What the device intended to report (for tests)."""

    boot_ids: list[int] = field(default_factory=list)
    rain_tips_delivered: dict[int, int] = field(default_factory=dict)  # boot id -> last delivered counter
    rain_tips_first: dict[int, int] = field(default_factory=dict)  # boot id -> first delivered counter
    seismic_samples: dict[int, int] = field(default_factory=dict)  # boot id -> samples generated
    frames_sent: int = 0
    frames_lost: int = 0  # lost on the link (outages)
    garbage_bytes: int = 0
    wire_delivered: list[tuple[float, WireState]] = field(default_factory=list)

    def rain_mm_delivered(self, mm_per_tip: float) -> float:
        return sum(self.rain_tips_delivered.values()) * mm_per_tip


class DeviceModel:
    """The device state machine. ``advance(t)`` returns the wire bytes it emits up to scenario time t."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.rng = np.random.default_rng(scenario.seed)
        self.truth = SimTruth()
        self.now = 0.0
        self.alive = False
        self.generation = 0
        self.boot_id = 0
        self.seq = 0
        self.boot_t = 0.0
        self.seis_t0 = 0.0  # time of sample index 0 (the boot, shifted by rate changes)
        self.tips_at_boot = 0
        self.last_rain_tips, self.last_rain_t = -1, 0.0
        self.seis_index = 0
        self.seis_rate = scenario.seismic_rate_hz
        self.clock_offset_ms: float | None = scenario.start_utc * 1000.0 if scenario.clock_set else None
        self.rx = FrameDecoder(name="device-rx")
        self.wire_state = WireState.INTACT
        self.wire_transitions = 0
        self.wire_changed_ms = 0
        self._queue: list[tuple[float, int, str, int, float]] = []
        self._order = 0
        self._boot_count = 0
        self._push(0.0, "boot")
        for t in scenario.reboots:
            self._push(t, "down")
        for change in scenario.wire:
            self._push(change.t_s, "wire_change", value=float(change.state))
        for g in scenario.garbage:
            self._push(g.t_s, "garbage", value=float(g.nbytes))

    # --- scheduling --------------------------------------------------------------------------------
    def _push(self, t: float, kind: str, *, gen: int = -1, value: float = 0.0) -> None:
        self._order += 1
        heapq.heappush(self._queue, (t, self._order, kind, gen, value))

    def next_event_time(self) -> float:
        return self._queue[0][0] if self._queue else math.inf

    def advance(self, t_to: float) -> list[tuple[float, bytes]]:
        """Process every event up to ``t_to`` (capped at the scenario end); return (t_s, bytes) emitted."""
        out: list[tuple[float, bytes]] = []
        end = min(t_to, self.s.duration_s)
        while self._queue and self._queue[0][0] <= end:
            t, _, kind, gen, value = heapq.heappop(self._queue)
            self.now = t
            if gen not in (-1, self.generation):
                continue  # a periodic event of a previous boot
            out.extend(self._event(t, kind, value))
        self.now = max(self.now, end)
        return out

    def finished(self) -> bool:
        return self.now >= self.s.duration_s

    # --- events ------------------------------------------------------------------------------------
    def _event(self, t: float, kind: str, value: float) -> list[tuple[float, bytes]]:
        if kind == "garbage":
            noise = self.rng.integers(0, 256, int(value), dtype=np.uint8).tobytes()
            self.truth.garbage_bytes += len(noise)
            return [(t, noise)]
        if kind == "boot":
            return self._boot(t)
        if kind == "down":
            self.alive = False
            self.generation += 1
            self._push(t + self.s.reboot_downtime_s, "boot")
            return []
        if kind == "wire_change":
            new = WireState(int(value))
            if new != self.wire_state:
                self.wire_state = new
                self.wire_transitions = (self.wire_transitions + 1) % 65536
                self.wire_changed_ms = self._device_ms(t)
                if self.alive:
                    return self._send(t, [self._wire_msg(t)])
            return []
        if not self.alive:
            return []
        gen = self.generation
        if kind == "heartbeat":
            self._push(t + self.s.heartbeat_period_s, "heartbeat", gen=gen)
            return self._send(t, [self._heartbeat(t), self._wire_msg(t)])
        if kind == "rain":
            self._push(t + self.s.rain_check_s, "rain", gen=gen)
            msg = self._rain(t)
            if msg.tips == self.last_rain_tips and t - self.last_rain_t < self.s.rain_period_s - 1e-9:
                return []
            self.last_rain_tips, self.last_rain_t = msg.tips, t
            return self._send(t, [msg])
        if kind == "seismic":
            block = self._seismic_block()
            next_end = self.seis_index + self.s.seismic_block  # sent once its last sample is taken
            self._push(self.seis_t0 + next_end / self.seis_rate, "seismic", gen=gen)
            return self._send(t, [block])
        raise ValueError(f"unknown simulator event {kind}")

    def _boot(self, t: float) -> list[tuple[float, bytes]]:
        s = self.s
        self._boot_count += 1
        if len(s.boot_ids) >= self._boot_count:
            self.boot_id = s.boot_ids[self._boot_count - 1]
        else:
            self.boot_id = int(self.rng.integers(1, 2**32))
        self.truth.boot_ids.append(self.boot_id)
        self.alive = True
        self.generation += 1
        self.seq = 0
        self.boot_t = t
        self.seis_t0 = t
        self.tips_at_boot = s.physical_tips_until(t)
        self.seis_index = 0
        self.seis_rate = s.seismic_rate_hz
        self.wire_transitions = 0
        self.last_rain_tips, self.last_rain_t = -1, t
        self.rx = FrameDecoder(name="device-rx")
        gen = self.generation
        self._push(t, "rain", gen=gen)
        self._push(t, "heartbeat", gen=gen)
        if self.seis_rate > 0:
            self._push(t + s.seismic_block / self.seis_rate, "seismic", gen=gen)
        return self._send(t, [self._hello()])

    # --- messages ----------------------------------------------------------------------------------
    def _device_ms(self, t: float) -> int:
        return 0 if self.clock_offset_ms is None else round(self.clock_offset_ms + t * 1000.0)

    def _hello(self) -> Hello:
        caps = Capability.RAIN | Capability.WIRE | Capability.RTC | Capability.SELF_TEST
        if self.s.seismic_rate_hz > 0:
            caps |= Capability.SEISMIC | Capability.SEISMIC_INT32
        major, minor, patch = self.s.firmware
        return Hello(self.s.device_id, major, minor, patch, caps)

    def _uptime(self, t: float) -> int:
        return int(t - self.boot_t)

    def _heartbeat(self, t: float) -> Heartbeat:
        rx_errors = min(self.rx.counters.error_total(), 65535)
        temp = round(self.s.temp_c * 100)
        return Heartbeat(self._uptime(t), self.s.supply_mv, temp, rx_errors, 0, 0)

    def _wire_msg(self, t: float) -> Wire:
        return Wire(self.wire_state, self.wire_transitions, self._uptime(t), self.wire_changed_ms)

    def _rain(self, t: float) -> Rain:
        tips = (self.s.physical_tips_until(t) - self.tips_at_boot) % 2**32
        return Rain(tips, self._uptime(t), self._device_ms(t))

    def _seismic_block(self) -> Seismic:
        s = self.s
        n, rate, i0 = s.seismic_block, self.seis_rate, self.seis_index
        times = self.seis_t0 + (i0 + np.arange(n)) / rate
        if s.seismic_trace:
            idx = np.rint(times * rate).astype(np.int64)
            trace = np.asarray(s.seismic_trace, dtype=np.int64)
            ok = idx < len(trace)
            signal = np.where(ok, trace[np.minimum(idx, len(trace) - 1)], 0).astype(np.float64)
        else:
            signal = self.rng.normal(0.0, s.seismic_noise_counts, n)
            for ev in s.seismic_events:
                rel = times - ev.t_s
                inside = (rel >= 0) & (rel <= ev.duration_s)
                env = np.sin(np.pi * np.clip(rel / ev.duration_s, 0, 1))
                signal += np.where(
                    inside, ev.amplitude_counts * env * np.sin(2 * np.pi * ev.freq_hz * rel), 0.0
                )
        lim = _LIMITS[s.seismic_format]
        counts = np.clip(np.rint(signal), -lim - 1, lim).astype(np.int64)
        self.seis_index += n
        self.truth.seismic_samples[self.boot_id] = self.truth.seismic_samples.get(self.boot_id, 0) + n
        t_first = float(times[0])
        samples = tuple(int(x) for x in counts)
        return Seismic(i0, self._device_ms(t_first), rate, s.seismic_gain, s.seismic_format, samples)

    def _send(self, t: float, messages: list[Message]) -> list[tuple[float, bytes]]:
        out = []
        lost = any(o.t_s <= t < o.t_s + o.duration_s for o in self.s.outages)
        for msg in messages:
            data = encode_frame(msg, seq=self.seq, boot_id=self.boot_id)
            self.seq = (self.seq + 1) % 65536
            self.truth.frames_sent += 1
            if lost:
                self.truth.frames_lost += 1
                continue
            if isinstance(msg, Rain):
                self.truth.rain_tips_delivered[self.boot_id] = msg.tips
                self.truth.rain_tips_first.setdefault(self.boot_id, msg.tips)
            elif isinstance(msg, Wire):
                self.truth.wire_delivered.append((t, msg.state))
            out.append((t, data))
        return out

    # --- commands ----------------------------------------------------------------------------------
    def receive(self, data: bytes, t: float) -> list[tuple[float, bytes]]:
        """Bytes from the gateway: decode COMMAND frames and answer them (nothing while rebooting)."""
        self.rx.feed(data)
        out: list[tuple[float, bytes]] = []
        for frame in self.rx.frames():
            if self.alive and isinstance(frame.message, Command):
                out.extend(self._send(t, self.answer(frame.message, t)))
        return out

    def answer(self, cmd: Command, t: float) -> list[Message]:
        """The device's command handler."""
        code = cmd.code
        if code == CommandCode.SET_CLOCK:
            if cmd.arg <= 0:
                return [Nack(cmd.token, code, NackReason.BAD_ARGUMENT)]
            self.clock_offset_ms = cmd.arg - t * 1000.0
            return [Ack(cmd.token, code, 0)]
        if code == CommandCode.SELF_TEST:
            return [Ack(cmd.token, code, self.s.self_test_failures)]
        if code == CommandCode.REQUEST_HELLO:
            return [Ack(cmd.token, code, 0), self._hello()]
        if code == CommandCode.REBOOT:
            self._push(t, "down")
            return [Ack(cmd.token, code, 0)]
        if code == CommandCode.SET_SEISMIC_RATE:
            if self.s.seismic_rate_hz == 0:
                return [Nack(cmd.token, code, NackReason.NOT_SUPPORTED)]
            if cmd.arg not in SEISMIC_RATES:
                return [Nack(cmd.token, code, NackReason.BAD_ARGUMENT)]
            self._rate_change(int(cmd.arg))
            return [Ack(cmd.token, code, 0)]
        return [Nack(cmd.token, code, NackReason.UNKNOWN_COMMAND)]

    def _rate_change(self, rate: int) -> None:
        # Keep the sample index running; move the time origin so sample `seis_index` keeps its time.
        self.seis_t0 = self.seis_t0 + self.seis_index / self.seis_rate - self.seis_index / rate
        self.seis_rate = rate


def generate_frames(scenario: Scenario) -> Iterator[tuple[float, bytes]]:
    """Every (t_s, bytes) the device puts on the line over the whole scenario, in time order."""
    model = DeviceModel(scenario)
    yield from model.advance(scenario.duration_s)
