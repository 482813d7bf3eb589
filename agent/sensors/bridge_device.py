"""Turn firmware-bridge frames into Samples (see the channel table in docs/development.md).

Stateful per device: it remembers the boot id, the last rain counter, the seismic sample index and the
wire-transition counter, so it can difference the cumulative counters, detect gaps and reboots, and count
every anomaly. The rain rule is a pure function (:func:`rain_step`); docs/firmware-protocol.md states it.

* RAIN -> ``rain.mm`` = tips since the previous RAIN frame x mm_per_tip (0.0 when it did not rain).
* WIRE -> ``wire.state`` (0 intact, 1 tripped, 2 open circuit, 3 short) on every WIRE frame.
* HEARTBEAT -> ``device.supply_v`` and ``device.temp_c``.
* SEISMIC -> :class:`SeismicBlock` (raw counts, UTC of the first sample, gap before it) for the seismic
  processor; no samples directly.

A bridge port's one ingest path, live and in replay, is :class:`agent.sensors.decoders.BridgeDecoder`:
frame decoder -> this device -> seismic processor, built from the configuration (``mm_per_tip``,
``max_mm_per_h``, ``max_skew_s``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from agent.features.samples import Sample
from firmware_bridge.messages import (
    Ack,
    Frame,
    Heartbeat,
    Hello,
    Nack,
    Rain,
    SampleFormat,
    Seismic,
    Wire,
    WireState,
)

log = logging.getLogger(__name__)

U32 = 1 << 32
U16 = 1 << 16
SUPPLY_V_RANGE = (0.0, 60.0)
TEMP_C_RANGE = (-60.0, 100.0)
FULL_SCALE = {SampleFormat.INT16: 2**15 - 1, SampleFormat.INT32: 2**31 - 1}


@dataclass(frozen=True, slots=True)
class RainState:
    """Last accepted rain counter; persist it to resume exactly across gateway restarts.

    ``held``: frames of this boot in a row that the counter could not explain (kept out, baseline held).
    """

    boot_id: int
    tips: int
    uptime_s: int
    held: int = 0


# Frames in a row that contradict the baseline before the counter itself is believed (re-baseline).
REBASELINE_AFTER = 3


@dataclass(frozen=True, slots=True)
class RainDecision:
    """What :func:`rain_step` decided for one RAIN frame."""

    tips: int | None  # tips to pass on as rain (None: nothing passed on)
    kind: str  # ok | wrap | reboot | baseline | regression | implausible
    state: RainState


def max_plausible_tips(elapsed_s: float, mm_per_tip: float, max_mm_per_h: float) -> int:
    """Most tips a gauge can report in ``elapsed_s`` (rates judged over at least one minute)."""
    return math.ceil(max_mm_per_h * max(elapsed_s, 60.0) / 3600.0 / mm_per_tip) + 1


def rain_step(
    prev: RainState | None, boot_id: int, rain: Rain, *, mm_per_tip: float, max_mm_per_h: float
) -> RainDecision:
    """The rain-counter rule (pure). Never invents rain: anything it cannot explain is not passed on.

    - no previous state (first frame this gateway sees): baseline only, nothing passed on;
    - same boot: ``(tips - prev) mod 2**32`` tips (the u32 counter may wrap) if plausible for the
      uptime elapsed. Otherwise (a replayed old frame: ``regression``; a jump: ``implausible``) nothing
      is passed on and the baseline is HELD, so the next good frame counts from the last good value
      and no rain is counted twice; only after ``REBASELINE_AFTER`` such frames in a row is the counter
      believed and taken as the new baseline (``rebaseline``; the rain in between is unknown);
    - new boot id (the device rebooted): the counter restarted at 0, so ``tips`` fell since that boot,
      if plausible for the device's uptime. Tips between the last frame of the old boot and the reboot
      were never reported and are unknown (counted by the caller, never guessed).
    """
    state = RainState(boot_id, rain.tips, rain.uptime_s)
    if prev is None:
        return RainDecision(None, "baseline", state)
    if prev.boot_id != boot_id:
        limit = max_plausible_tips(rain.uptime_s, mm_per_tip, max_mm_per_h)
        return (
            RainDecision(rain.tips, "reboot", state)
            if rain.tips <= limit
            else RainDecision(None, "implausible", state)
        )
    delta = (rain.tips - prev.tips) % U32
    elapsed = rain.uptime_s - prev.uptime_s
    if delta <= max_plausible_tips(max(elapsed, 0), mm_per_tip, max_mm_per_h):
        return RainDecision(delta, "wrap" if rain.tips < prev.tips else "ok", state)
    if prev.held + 1 >= REBASELINE_AFTER:
        return RainDecision(None, "rebaseline", state)
    kind = "regression" if rain.tips < prev.tips else "implausible"
    return RainDecision(None, kind, RainState(prev.boot_id, prev.tips, prev.uptime_s, prev.held + 1))


@dataclass(frozen=True, eq=False)
class SeismicBlock:
    """One SEISMIC frame for the seismic processor (``SeismicProcessor.feed(t0, first_index, rate_hz,
    gain, counts)``)."""

    t0: float  # UTC of the first sample
    first_index: int  # samples since the device booted
    rate_hz: float
    gain: int
    counts: np.ndarray  # int32, read-only
    boot_id: int
    gap_before: int  # samples missing since the previous block of this boot (0: contiguous)
    restart: bool  # first block after a reboot / rate change / gateway start: reset filters
    device_time_ms: int  # device clock of the first sample (0: clock not set)
    clipped: int = 0  # samples at the ADC's full scale (the true amplitude was larger)


@dataclass
class BridgeDeviceCounters:
    frames: int = 0
    reboots: int = 0
    rain_frames: int = 0
    rain_tips: int = 0  # tips passed on as rain
    rain: dict[str, int] = field(default_factory=dict)  # rain_step kinds
    seismic_blocks: int = 0
    seismic_gaps: int = 0
    seismic_missing_samples: int = 0
    seismic_overlap_samples: int = 0  # samples received twice (trimmed)
    seismic_dropped_blocks: int = 0  # blocks entirely overlapping what was already passed on
    seismic_reanchors: int = 0  # block timing disagreed with the receive time by > max_skew_s
    seismic_clipped_samples: int = 0  # samples at full scale (saturated ADC)
    wire_frames: int = 0
    wire_missed_transitions: int = 0  # state changes the received WIRE frames do not explain
    heartbeats: int = 0
    implausible_heartbeats: int = 0
    acks: int = 0
    nacks: int = 0


@dataclass(frozen=True)
class BridgeOutput:
    samples: tuple[Sample, ...] = ()
    seismic: SeismicBlock | None = None


@dataclass
class _SeismicTrack:
    boot_id: int
    next_index: int
    rate_hz: float
    anchor_t: float
    anchor_index: int


class BridgeDevice:
    """Stateful decoder of one microcontroller's frames into Samples and SeismicBlocks."""

    def __init__(
        self,
        *,
        mm_per_tip: float = 0.2,
        max_rain_mm_per_h: float = 400.0,
        rain_state: RainState | None = None,
        max_skew_s: float = 2.0,
        name: str = "bridge",
    ) -> None:
        self.mm_per_tip = mm_per_tip
        self.max_rain_mm_per_h = max_rain_mm_per_h
        self.rain_state = rain_state
        self.max_skew_s = max_skew_s
        self.name = name
        self.counters = BridgeDeviceCounters()
        self.hello: Hello | None = None
        self.heartbeat: Heartbeat | None = None
        self.boot_id: int | None = None
        self.clock_skew_s: float | None = None  # device clock minus receive time (None: clock not set)
        self._clock_seen = False
        self.responses: list[tuple[float, Ack | Nack]] = []
        self._seis: _SeismicTrack | None = None
        self._wire_transitions: tuple[int, int, WireState] | None = None  # boot id, transitions, state

    def handle(self, frame: Frame, t: float) -> BridgeOutput:
        """Process one accepted frame received at UTC ``t``."""
        c = self.counters
        c.frames += 1
        if frame.boot_id != self.boot_id:
            if self.boot_id is not None:
                c.reboots += 1
                log.info(
                    "%s: device rebooted (boot id 0x%08x -> 0x%08x)", self.name, self.boot_id, frame.boot_id
                )
            self.boot_id = frame.boot_id
        msg = frame.message
        if isinstance(msg, Rain):
            return self._rain(frame.boot_id, msg, t)
        if isinstance(msg, Seismic):
            return BridgeOutput(seismic=self._seismic(frame.boot_id, msg, t))
        if isinstance(msg, Wire):
            return self._wire(frame.boot_id, msg, t)
        if isinstance(msg, Heartbeat):
            return self._heartbeat(msg, t)
        if isinstance(msg, Hello):
            self.hello = msg
        elif isinstance(msg, Ack | Nack):
            c.acks += isinstance(msg, Ack)
            c.nacks += isinstance(msg, Nack)
            self.responses.append((t, msg))
        return BridgeOutput()

    def _clock(self, device_time_ms: int, t: float) -> None:
        self._clock_seen = True
        self.clock_skew_s = device_time_ms / 1000.0 - t if device_time_ms else None

    def clock_ok(self, max_skew_s: float | None = None) -> bool | None:
        """False if the device clock is unset or off by more than ``max_skew_s`` (default: the configured
        ``sensors.device.max_skew_s``; send SET_CLOCK); None until a RAIN frame has shown the clock."""
        if not self._clock_seen:
            return None
        limit = self.max_skew_s if max_skew_s is None else max_skew_s
        return self.clock_skew_s is not None and abs(self.clock_skew_s) <= limit

    def _rain(self, boot_id: int, msg: Rain, t: float) -> BridgeOutput:
        c = self.counters
        c.rain_frames += 1
        self._clock(msg.device_time_ms, t)
        decision = rain_step(
            self.rain_state, boot_id, msg, mm_per_tip=self.mm_per_tip, max_mm_per_h=self.max_rain_mm_per_h
        )
        c.rain[decision.kind] = c.rain.get(decision.kind, 0) + 1
        self.rain_state = decision.state
        if decision.tips is None:
            if decision.kind != "baseline":
                log.warning(
                    "%s: rain counter %s (%d tips), not passed on", self.name, decision.kind, msg.tips
                )
            return BridgeOutput()
        c.rain_tips += decision.tips
        return BridgeOutput(samples=(Sample(t, "rain.mm", round(decision.tips * self.mm_per_tip, 9)),))

    def _seismic(self, boot_id: int, msg: Seismic, t: float) -> SeismicBlock | None:
        c = self.counters
        c.seismic_blocks += 1
        counts = np.asarray(msg.samples, dtype=np.int32)
        first, rate = msg.first_index, float(msg.rate_hz)
        track = self._seis
        restart = track is None or track.boot_id != boot_id or track.rate_hz != rate
        gap = 0
        if track is not None and not restart:
            if first > track.next_index:
                gap = first - track.next_index
                c.seismic_gaps += 1
                c.seismic_missing_samples += gap
            elif first < track.next_index:
                overlap = track.next_index - first
                c.seismic_overlap_samples += min(overlap, len(counts))
                if overlap >= len(counts):
                    c.seismic_dropped_blocks += 1
                    return None
                counts, first = counts[overlap:], track.next_index
        if track is None or restart:
            track = _SeismicTrack(boot_id, first, rate, t - len(counts) / rate, first)
            self._seis = track
        t0 = track.anchor_t + (first - track.anchor_index) / rate
        end = t0 + len(counts) / rate
        if abs(t - end) > self.max_skew_s:
            c.seismic_reanchors += 1
            track.anchor_t, track.anchor_index = t - len(counts) / rate, first
            t0 = track.anchor_t
        track.next_index = first + len(counts)
        full_scale = FULL_SCALE[msg.sample_format]
        clipped = int(np.count_nonzero((counts >= full_scale) | (counts <= -full_scale - 1)))
        c.seismic_clipped_samples += clipped
        counts.setflags(write=False)
        return SeismicBlock(
            t0, first, rate, msg.gain, counts, boot_id, gap, restart, msg.device_time_ms, clipped
        )

    def _wire(self, boot_id: int, msg: Wire, t: float) -> BridgeOutput:
        c = self.counters
        c.wire_frames += 1
        prev = self._wire_transitions
        if prev is not None and prev[0] == boot_id:
            step = (msg.transitions - prev[1]) % U16
            unexplained = step - (1 if msg.state != prev[2] else 0)
            if unexplained > 0:
                c.wire_missed_transitions += unexplained
                log.warning(
                    "%s: %d wire-alarm state changes were never received (now %s)",
                    self.name,
                    unexplained,
                    msg.state.name,
                )
        self._wire_transitions = (boot_id, msg.transitions, msg.state)
        return BridgeOutput(samples=(Sample(t, "wire.state", float(int(msg.state))),))

    def _heartbeat(self, msg: Heartbeat, t: float) -> BridgeOutput:
        c = self.counters
        c.heartbeats += 1
        self.heartbeat = msg
        volts, temp = msg.supply_v, msg.temp_c
        if not (
            SUPPLY_V_RANGE[0] <= volts <= SUPPLY_V_RANGE[1] and TEMP_C_RANGE[0] <= temp <= TEMP_C_RANGE[1]
        ):
            c.implausible_heartbeats += 1
            log.warning("%s: implausible heartbeat %.3f V %.2f degC, not passed on", self.name, volts, temp)
            return BridgeOutput()
        return BridgeOutput(samples=(Sample(t, "device.supply_v", volts), Sample(t, "device.temp_c", temp)))
