"""Per-port decoders: the bytes of one serial port -> samples, with counters and resumable state.

GNSS ports: UBX/NMEA framer + epoch gate (agent.sensors.gnss). Bridge ports: frame decoder
(firmware_bridge) + device state (rain counter rule, wire, heartbeat) + seismic processor.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any, Protocol

from agent.errors import ConfigError
from agent.features.samples import Sample
from agent.sensors.bridge_device import BridgeDevice, RainState
from agent.sensors.seismic import SeismicConfig, SeismicProcessor
from agent.sensors.settings import SensorsConfig, SerialPortConfig
from firmware_bridge.reader import FrameDecoder


class PortDecoder(Protocol):
    """Bytes of one port -> samples. Stateful; used by one thread at a time."""

    def feed(self, t: float, data: bytes) -> list[Sample]: ...

    def finish(self) -> list[Sample]: ...

    def counters(self) -> dict[str, Any]: ...


class GnssDecoder:
    """UBX/NMEA receiver stream (agent.sensors.gnss); epochs carry the receiver's own time."""

    def __init__(self, cfg: SensorsConfig) -> None:
        from agent.sensors.gnss import GnssConfig, GnssProcessor

        if cfg.gnss.reference is None:
            raise ConfigError(
                "a gnss port is enabled but sensors.gnss.reference is not set",
                fix="set sensors.gnss.reference {lat, lon, h_m} to the surveyed reference position",
            )
        self._now = math.nan
        self.proc = GnssProcessor(GnssConfig.from_mapping(cfg.gnss.processor_mapping()), clock=self._clock)

    def _clock(self) -> float:
        return self._now if math.isfinite(self._now) else time.time()

    def feed(self, t: float, data: bytes) -> list[Sample]:
        self._now = t  # NMEA without a date is dated by the receive time
        return self.proc.feed(data)

    def finish(self) -> list[Sample]:
        return self.proc.finish()

    def take_time_fix(self) -> float | None:
        """The receiver's last valid UTC time since the previous call (agent/sensors/clock.py)."""
        ctx = self.proc.assembler.ctx
        fix, ctx.utc_fix = ctx.utc_fix, None
        return fix

    def counters(self) -> dict[str, Any]:
        return self.proc.counters()


class BridgeDecoder:
    """Site microcontroller (firmware_bridge): rain, wire, heartbeat samples; SEISMIC blocks -> seismic.

    The one path of a bridge port's bytes, shared by the live port threads and by replay of a capture
    (both through :meth:`agent.sensors.pipeline.Pipeline.ingest`); rain depth per tip, the plausible
    rain rate and the clock skew limit come from the configuration."""

    def __init__(self, cfg: SensorsConfig, name: str) -> None:
        self.frames = FrameDecoder(name=name)
        self.device = BridgeDevice(
            mm_per_tip=cfg.rain.mm_per_tip,
            max_rain_mm_per_h=cfg.rain.max_mm_per_h,
            max_skew_s=cfg.device.max_skew_s,
            name=name,
        )
        self.seismic = _seismic_processor(cfg)

    def feed(self, t: float, data: bytes) -> list[Sample]:
        out: list[Sample] = []
        for frame in self.frames.decode(data):
            res = self.device.handle(frame, t)
            out.extend(res.samples)
            block = res.seismic
            if block is not None:
                out.extend(
                    self.seismic.feed(block.t0, block.first_index, block.rate_hz, block.gain, block.counts)
                )
        return out

    def finish(self) -> list[Sample]:
        return list(self.seismic.finish())

    def state(self) -> dict[str, int] | None:
        """What must survive a gateway restart: the rain counter baseline (None before the first frame)."""
        rs = self.device.rain_state
        return None if rs is None else asdict(rs)

    def restore(self, values: dict[str, int]) -> None:
        """Resume from :meth:`state` saved by a previous run, so the first frame after a restart counts
        the rain that fell while the gateway was down instead of being only a baseline."""
        self.device.rain_state = RainState(**{k: int(v) for k, v in values.items()})

    def counters(self) -> dict[str, Any]:
        return {
            "frames": self.frames.counters.as_dict(),
            "device": asdict(self.device.counters),
            "seismic": dict(self.seismic.counters),
        }


def _seismic_processor(cfg: SensorsConfig) -> SeismicProcessor:
    return SeismicProcessor(SeismicConfig(**cfg.seismic.processor_kwargs()))


def make_decoder(port: SerialPortConfig, cfg: SensorsConfig) -> PortDecoder:
    if port.kind == "gnss":
        return GnssDecoder(cfg)
    return BridgeDecoder(cfg, port.name)
