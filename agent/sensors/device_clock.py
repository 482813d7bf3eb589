"""SET_CLOCK to the site microcontroller: at start and whenever its clock drifts from the agent's.

The microcontroller stamps RAIN and WIRE changes with its own clock (``device_time_ms``; 0 while it
was never set). The agent sends it ``SET_CLOCK`` (firmware_bridge ``CommandCode.SET_CLOCK``, arg = UTC
ms) with the agent's time (GNSS-disciplined, agent/sensors/clock.py):

- at start: after the first bytes from the port (the port is open and the device talks);
- on drift: the device's clock is unset or more than ``max_skew_s`` off (``BridgeDevice.clock_ok``);
- when the agent's own correction changed (the system clock was found wrong, or fixed).

At most once per ``min_interval_s`` per port (a device that ignores it is not flooded). Sent, acked
and nacked commands are counted; the device's ACK/NACK arrives on the same port.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.sensors.clock import ClockDiscipline
from firmware_bridge.codec import FrameEncoder
from firmware_bridge.messages import Command, CommandCode

log = logging.getLogger(__name__)
Writer = Callable[[bytes], bool]


class DeviceClockSync:
    def __init__(
        self,
        time_source: ClockDiscipline,
        *,
        min_interval_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.time = time_source
        self.min_interval_s = min_interval_s
        self._mono = monotonic
        self._encoder = FrameEncoder()
        self._token = 0
        self._last: dict[str, tuple[float, float]] = {}  # port -> (monotonic sent, correction then)
        self.counters: Counter[str] = Counter()

    def after_chunk(self, port: str, device: Any, write: Writer, max_skew_s: float) -> bool:
        """Called after a chunk of ``port`` was decoded; sends SET_CLOCK when due. True if sent."""
        last = self._last.get(port)
        correction = self.time.correction_s
        if last is None:
            why = "start"
        elif device.clock_ok(max_skew_s) is False:
            why = "drift"
        elif abs(correction - last[1]) > self.time.wrong_above_s:
            why = "agent_clock_corrected"
        else:
            return False
        now = self._mono()
        if last is not None and now - last[0] < self.min_interval_s:
            return False
        self._token = (self._token + 1) % 65536
        ms = round(self.time.now() * 1000.0)
        frame = self._encoder.encode(Command(self._token, CommandCode.SET_CLOCK, ms))
        self._last[port] = (now, correction)
        if not write(frame):
            self.counters["write_failed"] += 1
            return False
        self.counters[f"sent.{why}"] += 1
        log.info("%s: SET_CLOCK sent (%s)", port, why)
        return True
