"""Typed, immutable messages of the bridge protocol and the enumerations their fields use.

Byte layouts live in :mod:`firmware_bridge.layouts` (a data table); this module is only the Python shape.
Units are in the field names (``_mv``, ``_centi_c``, ``_ms``, ``_s``, ``_hz``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

PROTOCOL_VERSION = 1
MAX_SEISMIC_SAMPLES = 500


class MsgType(IntEnum):
    """Message type byte (frame header offset 1)."""

    HELLO = 0x01
    HEARTBEAT = 0x02
    RAIN = 0x03
    SEISMIC = 0x04
    WIRE = 0x05
    COMMAND = 0x10
    ACK = 0x11
    NACK = 0x12


class Capability(IntFlag):
    """HELLO capabilities bitmap."""

    RAIN = 0x01
    SEISMIC = 0x02
    WIRE = 0x04
    RTC = 0x08  # device keeps a wall clock (SET_CLOCK accepted)
    SELF_TEST = 0x10
    SEISMIC_INT32 = 0x20  # may send 32-bit samples


class WireState(IntEnum):
    """State of the wire-alarm loop (the `wire.state` channel uses the same numbers)."""

    INTACT = 0
    TRIPPED = 1
    OPEN_CIRCUIT = 2
    SHORT = 3


class SampleFormat(IntEnum):
    """Element type of the samples in a SEISMIC block."""

    INT16 = 0
    INT32 = 1


class CommandCode(IntEnum):
    """COMMAND codes (gateway -> device). ``arg`` meaning per code is in docs/firmware-protocol.md."""

    SET_CLOCK = 1  # arg: UTC milliseconds since the Unix epoch
    SELF_TEST = 2  # arg: 0
    REQUEST_HELLO = 3  # arg: 0; the device answers ACK then HELLO
    REBOOT = 4  # arg: 0; ACK, then the device reboots (new boot id)
    SET_SEISMIC_RATE = 5  # arg: samples per second (50, 100 or 200)


class NackReason(IntEnum):
    """Why the device refused a COMMAND."""

    UNKNOWN_COMMAND = 1
    BAD_ARGUMENT = 2
    BUSY = 3
    NOT_SUPPORTED = 4
    INTERNAL_ERROR = 5


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent first after every boot and on REQUEST_HELLO."""

    device_id: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    capabilities: Capability


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Periodic health report (default every 60 s)."""

    uptime_s: int
    supply_mv: int
    temp_centi_c: int
    rx_errors: int  # frames the device dropped (bad CRC/COBS) since boot
    adc_overruns: int  # geophone samples lost in the device since boot
    tx_dropped: int  # frames the device could not send (UART buffer full) since boot

    @property
    def supply_v(self) -> float:
        return self.supply_mv / 1000.0

    @property
    def temp_c(self) -> float:
        return self.temp_centi_c / 100.0


@dataclass(frozen=True, slots=True)
class Rain:
    """Cumulative rain-gauge tips since boot, so a lost frame loses no rain."""

    tips: int
    uptime_s: int
    device_time_ms: int  # 0 while the device clock is not set


@dataclass(frozen=True, slots=True)
class Seismic:
    """A block of consecutive geophone samples; ``first_index`` counts samples since boot."""

    first_index: int
    device_time_ms: int  # of the first sample; 0 while the device clock is not set
    rate_hz: int
    gain: int
    sample_format: SampleFormat
    samples: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Wire:
    """State of the wire-alarm loop; sent on every change and with every heartbeat."""

    state: WireState
    transitions: int  # state changes since boot (u16, wraps)
    uptime_s: int
    changed_time_ms: int  # device time of the last change (latched); 0 if the clock was not set


@dataclass(frozen=True, slots=True)
class Command:
    """Gateway -> device request; the device answers ACK or NACK with the same ``token``."""

    token: int
    code: int  # a CommandCode; kept as int so a device can NACK codes it does not know
    arg: int


@dataclass(frozen=True, slots=True)
class Ack:
    token: int
    code: int
    detail: int  # SELF_TEST: bitmap of failed subsystems (0 = all passed); otherwise 0


@dataclass(frozen=True, slots=True)
class Nack:
    token: int
    code: int
    reason: NackReason


Message = Hello | Heartbeat | Rain | Seismic | Wire | Command | Ack | Nack


@dataclass(frozen=True, slots=True)
class Frame:
    """One accepted frame: header fields plus the typed message."""

    version: int
    msg_type: MsgType
    seq: int
    boot_id: int
    message: Message
