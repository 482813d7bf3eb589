"""The message layout table: one row per message type, struct formats and field order as data.

All multi-byte fields are little-endian. The codec (:mod:`firmware_bridge.codec`) is generic over this
table; docs/firmware-protocol.md is generated from the same facts (and a test checks they agree).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from firmware_bridge.messages import (
    MAX_SEISMIC_SAMPLES,
    Ack,
    Capability,
    Command,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    Nack,
    NackReason,
    Rain,
    SampleFormat,
    Seismic,
    Wire,
    WireState,
)

# Frame header (before the payload): version u8, type u8, seq u16, boot_id u32.
HEADER = struct.Struct("<BBHI")
# Frame trailer: CRC-32C over header + payload, u32 little-endian.
TRAILER = struct.Struct("<I")


@dataclass(frozen=True)
class ArraySpec:
    """A variable-length tail of equal elements after the fixed part."""

    target: str  # dataclass field receiving the tuple
    count_field: str  # fixed-part field holding the element count (not a dataclass field)
    format_field: str  # fixed-part field selecting the element type
    element_formats: Mapping[int, str]  # format_field value -> struct code
    max_count: int


@dataclass(frozen=True)
class Layout:
    msg_type: MsgType
    cls: type[Any]
    fixed: struct.Struct
    fields: tuple[str, ...]  # names of the fixed-part values, in struct order
    converters: Mapping[str, Callable[[int], Any]] = field(default_factory=dict)  # int -> enum
    array: ArraySpec | None = None


def _layout(
    msg_type: MsgType,
    cls: type[Any],
    fmt: str,
    fields: tuple[str, ...],
    converters: Mapping[str, Callable[[int], Any]] | None = None,
    array: ArraySpec | None = None,
) -> Layout:
    return Layout(msg_type, cls, struct.Struct(fmt), fields, MappingProxyType(dict(converters or {})), array)


LAYOUTS: tuple[Layout, ...] = (
    _layout(
        MsgType.HELLO,
        Hello,
        "<QBBHI",
        ("device_id", "fw_major", "fw_minor", "fw_patch", "capabilities"),
        {"capabilities": Capability},
    ),
    _layout(
        MsgType.HEARTBEAT,
        Heartbeat,
        "<IHhHHH",
        ("uptime_s", "supply_mv", "temp_centi_c", "rx_errors", "adc_overruns", "tx_dropped"),
    ),
    _layout(MsgType.RAIN, Rain, "<IIQ", ("tips", "uptime_s", "device_time_ms")),
    _layout(
        MsgType.SEISMIC,
        Seismic,
        "<QQHBBH",
        ("first_index", "device_time_ms", "rate_hz", "gain", "sample_format", "n"),
        {"sample_format": SampleFormat},
        ArraySpec("samples", "n", "sample_format", MappingProxyType({0: "h", 1: "i"}), MAX_SEISMIC_SAMPLES),
    ),
    _layout(
        MsgType.WIRE,
        Wire,
        "<BHIQ",
        ("state", "transitions", "uptime_s", "changed_time_ms"),
        {"state": WireState},
    ),
    _layout(MsgType.COMMAND, Command, "<HBq", ("token", "code", "arg")),
    _layout(MsgType.ACK, Ack, "<HBI", ("token", "code", "detail")),
    _layout(MsgType.NACK, Nack, "<HBB", ("token", "code", "reason"), {"reason": NackReason}),
)

BY_TYPE: Mapping[int, Layout] = MappingProxyType({int(lay.msg_type): lay for lay in LAYOUTS})
BY_CLASS: Mapping[type[Any], Layout] = MappingProxyType({lay.cls: lay for lay in LAYOUTS})


def layout_of(message: Message) -> Layout:
    return BY_CLASS[type(message)]


def max_payload_size() -> int:
    """Largest payload any layout allows (sets the reader's oversize limit)."""
    sizes = []
    for lay in LAYOUTS:
        size = lay.fixed.size
        if lay.array is not None:
            widest = max(struct.calcsize("<" + c) for c in lay.array.element_formats.values())
            size += widest * lay.array.max_count
        sizes.append(size)
    return max(sizes)


# What each field means (rendered into docs/firmware-protocol.md by render_markdown()).
FIELD_NOTES: Mapping[str, str] = MappingProxyType(
    {
        "HELLO.device_id": "unique device id (e.g. the MCU's serial number)",
        "HELLO.fw_major": "firmware version major",
        "HELLO.fw_minor": "firmware version minor",
        "HELLO.fw_patch": "firmware version patch",
        "HELLO.capabilities": "Capability bitmap",
        "HEARTBEAT.uptime_s": "seconds since boot",
        "HEARTBEAT.supply_mv": "supply voltage, mV",
        "HEARTBEAT.temp_centi_c": "board temperature, 0.01 degC (signed)",
        "HEARTBEAT.rx_errors": "gateway frames the device dropped since boot (bad CRC/COBS)",
        "HEARTBEAT.adc_overruns": "geophone samples lost inside the device since boot",
        "HEARTBEAT.tx_dropped": "frames the device could not send (UART buffer full) since boot",
        "RAIN.tips": "bucket tips since boot (cumulative, wraps at 2^32)",
        "RAIN.uptime_s": "seconds since boot when the counter was read",
        "RAIN.device_time_ms": "device clock, UTC ms since 1970; 0 = clock not set",
        "SEISMIC.first_index": "index of the first sample, counted from 0 at boot",
        "SEISMIC.device_time_ms": "device clock at the first sample; 0 = clock not set",
        "SEISMIC.rate_hz": "samples per second (> 0)",
        "SEISMIC.gain": "amplifier gain applied before the ADC (> 0)",
        "SEISMIC.sample_format": "SampleFormat: 0 = int16, 1 = int32",
        "SEISMIC.n": "number of samples that follow (0..500)",
        "WIRE.state": "WireState: 0 intact, 1 tripped, 2 open circuit, 3 short",
        "WIRE.transitions": "state changes since boot (wraps at 2^16)",
        "WIRE.uptime_s": "seconds since boot when the state was read",
        "WIRE.changed_time_ms": "device clock at the last change (latched); 0 = clock not set",
        "COMMAND.token": "chosen by the gateway, echoed in ACK/NACK (1..65535)",
        "COMMAND.code": "CommandCode",
        "COMMAND.arg": "argument, meaning per code (signed)",
        "ACK.token": "token of the COMMAND",
        "ACK.code": "code of the COMMAND",
        "ACK.detail": "SELF_TEST: bitmap of failed subsystems (0 = pass); else 0",
        "NACK.token": "token of the COMMAND",
        "NACK.code": "code of the COMMAND",
        "NACK.reason": "NackReason",
    }
)
_C_TYPES = {"B": "u8", "b": "i8", "H": "u16", "h": "i16", "I": "u32", "i": "i32", "Q": "u64", "q": "i64"}


def render_markdown() -> str:
    """The payload tables of docs/firmware-protocol.md, from LAYOUTS (a test keeps the doc in sync)."""
    lines: list[str] = []
    for lay in LAYOUTS:
        name = lay.msg_type.name
        size = f"{lay.fixed.size} bytes" + (" + samples" if lay.array else "")
        lines += [
            f"#### {name} (type 0x{int(lay.msg_type):02x}, struct `{lay.fixed.format}`, {size})",
            "",
            "| offset | type | field | meaning |",
            "|---|---|---|---|",
        ]
        offset = 0
        for field_name, code in zip(lay.fields, lay.fixed.format[1:], strict=True):
            note = FIELD_NOTES[f"{name}.{field_name}"]
            lines.append(f"| {offset} | {_C_TYPES[code]} | `{field_name}` | {note} |")
            offset += struct.calcsize("<" + code)
        if lay.array is not None:
            kinds = ", ".join(
                f"{_C_TYPES[c]} if {lay.array.format_field} = {v}"
                for v, c in lay.array.element_formats.items()
            )
            lines.append(
                f"| {offset} | {kinds} | `{lay.array.target}[{lay.array.count_field}]` | the samples |"
            )
        lines.append("")
    return "\n".join(lines)
