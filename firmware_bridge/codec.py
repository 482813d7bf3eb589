"""Generic frame codec over the layout table: message <-> frame bytes (pure functions).

Frame on the wire: ``0x00 | COBS(header | payload | crc32c) | 0x00`` (see docs/firmware-protocol.md).
"""

from __future__ import annotations

import secrets
import struct
from typing import Any

from firmware_bridge.cobs import cobs_decode, cobs_encode
from firmware_bridge.crc import crc32c
from firmware_bridge.errors import EncodeError, FrameError, FrameErrorKind
from firmware_bridge.layouts import BY_TYPE, HEADER, TRAILER, layout_of, max_payload_size
from firmware_bridge.messages import PROTOCOL_VERSION, Frame, Message, MsgType, Seismic

DELIMITER = b"\x00"
MIN_FRAME = HEADER.size + TRAILER.size
MAX_FRAME = HEADER.size + max_payload_size() + TRAILER.size
# Largest COBS block of a legal frame (one overhead byte per 254, plus one).
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1
DROPPED = "the frame is dropped; if this repeats, check the cable, the baud rate and the device firmware"


def encode_payload(message: Message) -> bytes:
    lay = layout_of(message)
    values: list[Any] = []
    tail = b""
    for name in lay.fields:
        if lay.array is not None and name == lay.array.count_field:
            values.append(len(getattr(message, lay.array.target)))
        else:
            values.append(int(getattr(message, name)))
    try:
        fixed = lay.fixed.pack(*values)
        if lay.array is not None:
            items = getattr(message, lay.array.target)
            if len(items) > lay.array.max_count:
                raise EncodeError(
                    f"{lay.msg_type.name} has {len(items)} samples, more than {lay.array.max_count}",
                    fix="split the block into several frames",
                )
            code = lay.array.element_formats.get(int(getattr(message, lay.array.format_field)))
            if code is None:
                raise EncodeError(
                    f"{lay.msg_type.name}: unknown {lay.array.format_field}",
                    fix=f"use one of {sorted(lay.array.element_formats)}",
                )
            tail = struct.pack(f"<{len(items)}{code}", *items)
    except struct.error as exc:
        raise EncodeError(
            f"{lay.msg_type.name} field out of range: {exc}",
            fix="check the field widths in docs/firmware-protocol.md",
        ) from exc
    return fixed + tail


def encode_raw(message: Message, *, seq: int, boot_id: int, version: int = PROTOCOL_VERSION) -> bytes:
    """Header + payload + CRC, before COBS (what a test vector's ``raw_hex`` holds)."""
    lay = layout_of(message)
    try:
        head = HEADER.pack(version, int(lay.msg_type), seq, boot_id)
    except struct.error as exc:
        raise EncodeError(f"frame header out of range: {exc}", fix="seq is u16, boot_id is u32") from exc
    body = head + encode_payload(message)
    return body + TRAILER.pack(crc32c(body))


def encode_frame(
    message: Message,
    *,
    seq: int,
    boot_id: int,
    version: int = PROTOCOL_VERSION,
    leading_delimiter: bool = True,
) -> bytes:
    """The bytes to put on the wire for one message."""
    block = cobs_encode(encode_raw(message, seq=seq, boot_id=boot_id, version=version))
    return (DELIMITER if leading_delimiter else b"") + block + DELIMITER


def _err(kind: FrameErrorKind, message: str, fix: str) -> FrameError:
    return FrameError(kind, message, fix=fix)


def decode_raw(raw: bytes, *, version: int = PROTOCOL_VERSION) -> Frame:
    """Check and decode header + payload + CRC (COBS already removed). Raises FrameError."""
    if len(raw) < MIN_FRAME:
        raise _err(
            FrameErrorKind.BAD_LENGTH, f"frame of {len(raw)} bytes is shorter than {MIN_FRAME}", DROPPED
        )
    body = raw[: -TRAILER.size]
    (crc,) = TRAILER.unpack_from(raw, len(body))
    if crc32c(body) != crc:
        raise _err(FrameErrorKind.BAD_CRC, f"CRC-32C mismatch in a {len(raw)}-byte frame", DROPPED)
    ver, type_id, seq, boot_id = HEADER.unpack_from(body)
    if ver != version:
        raise _err(
            FrameErrorKind.VERSION_MISMATCH,
            f"frame speaks protocol version {ver}, this reader speaks {version}",
            "update the gateway or the device firmware so both speak the same protocol version",
        )
    lay = BY_TYPE.get(type_id)
    if lay is None:
        raise _err(FrameErrorKind.UNKNOWN_TYPE, f"unknown message type 0x{type_id:02x}", DROPPED)
    if boot_id == 0:
        raise _err(
            FrameErrorKind.BAD_VALUE,
            "boot id 0 is reserved",
            "the device must pick a random non-zero boot id",
        )
    payload = body[HEADER.size :]
    return Frame(ver, MsgType(type_id), seq, boot_id, decode_payload(lay.msg_type, payload))


def decode_payload(msg_type: MsgType, payload: bytes) -> Message:
    lay = BY_TYPE[int(msg_type)]
    name = lay.msg_type.name
    if len(payload) < lay.fixed.size or (lay.array is None and len(payload) != lay.fixed.size):
        raise _err(
            FrameErrorKind.BAD_LENGTH,
            f"{name} payload of {len(payload)} bytes, layout needs {lay.fixed.size}",
            DROPPED,
        )
    values = dict(zip(lay.fields, lay.fixed.unpack_from(payload), strict=True))
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        conv = lay.converters.get(key)
        if conv is not None:
            try:
                value = conv(value)
            except ValueError as exc:
                raise _err(
                    FrameErrorKind.BAD_VALUE, f"{name}.{key} = {value} is not allowed", DROPPED
                ) from exc
        kwargs[key] = value
    if lay.array is not None:
        arr = lay.array
        count = kwargs.pop(arr.count_field)
        code = arr.element_formats[int(kwargs[arr.format_field])]
        if count > arr.max_count:
            raise _err(
                FrameErrorKind.BAD_VALUE, f"{name} claims {count} samples (max {arr.max_count})", DROPPED
            )
        need = lay.fixed.size + count * struct.calcsize("<" + code)
        if len(payload) != need:
            raise _err(
                FrameErrorKind.BAD_LENGTH,
                f"{name} payload of {len(payload)} bytes, {count} samples need {need}",
                DROPPED,
            )
        kwargs[arr.target] = struct.unpack_from(f"<{count}{code}", payload, lay.fixed.size)
    message: Message = lay.cls(**kwargs)
    _check_domain(message)
    return message


def _check_domain(message: Message) -> None:
    """Field domains the struct format alone cannot express."""
    if isinstance(message, Seismic) and (message.rate_hz == 0 or message.gain == 0):
        raise _err(FrameErrorKind.BAD_VALUE, "SEISMIC with rate_hz or gain 0", DROPPED)


def decode_block(block: bytes, *, version: int = PROTOCOL_VERSION) -> Frame:
    """COBS-decode and check one block (the bytes between two 0x00). Raises FrameError."""
    return decode_raw(cobs_decode(block), version=version)


class FrameEncoder:
    """Encoder for one sender: owns its boot id (random per process/boot) and sequence counter."""

    def __init__(self, boot_id: int | None = None, *, seq: int = 0) -> None:
        self.boot_id = boot_id if boot_id is not None else secrets.randbelow(0xFFFFFFFF) + 1
        if not 0 < self.boot_id < 1 << 32:
            raise EncodeError(f"boot id {self.boot_id} is not in 1..2**32-1", fix="0 is reserved")
        self.seq = seq % 65536

    def encode(self, message: Message) -> bytes:
        data = encode_frame(message, seq=self.seq, boot_id=self.boot_id)
        self.seq = (self.seq + 1) % 65536
        return data
