"""Test vectors of the bridge protocol: build them, write them as JSON data files, load them.

``vectors/valid.json``: one frame each, with its fields, ``raw_hex`` (header + payload + CRC, before
COBS), ``crc32c_hex`` and ``wire_hex`` (the bytes on the line, delimiters included).
``vectors/invalid.json``: byte streams (``wire_hex``) with the frames a reader must accept and the
errors it must count (bad CRC, truncated, garbage between frames, ...).

Regenerate with ``python -m firmware_bridge.testvectors`` (tests check the files match this code).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import struct
import sys
from pathlib import Path
from typing import Any

from firmware_bridge.cobs import cobs_encode
from firmware_bridge.codec import encode_frame, encode_raw
from firmware_bridge.crc import crc32c
from firmware_bridge.errors import VectorError
from firmware_bridge.layouts import BY_TYPE, HEADER, TRAILER, layout_of
from firmware_bridge.messages import (
    Ack,
    Capability,
    Command,
    CommandCode,
    Frame,
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
from firmware_bridge.reader import FrameDecoder

VECTOR_DIR = Path(__file__).parent / "vectors"
BOOT = 0x5EED1234


def frame_to_json(frame: Frame) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(frame.message):
        value = getattr(frame.message, f.name)
        fields[f.name] = list(value) if isinstance(value, tuple) else int(value)
    return {"type": frame.msg_type.name, "seq": frame.seq, "boot_id": frame.boot_id, "fields": fields}


def message_from_json(doc: dict[str, Any]) -> Message:
    try:
        lay = BY_TYPE[int(MsgType[doc["type"]])]
        kwargs = dict(doc["fields"])
        for key, conv in lay.converters.items():
            if key in kwargs:
                kwargs[key] = conv(kwargs[key])
        if lay.array is not None:
            kwargs[lay.array.target] = tuple(kwargs[lay.array.target])
        message: Message = lay.cls(**kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise VectorError(f"bad vector message {doc!r}: {exc}", fix="see firmware_bridge/vectors/") from exc
    return message


def _valid_cases() -> list[tuple[str, str, Message, int]]:
    rtc = Capability.RAIN | Capability.SEISMIC | Capability.WIRE | Capability.RTC | Capability.SELF_TEST
    return [
        ("hello", "HELLO after boot, firmware 1.2.3", Hello(0x4C45575300000001, 1, 2, 3, rtc), 0),
        ("heartbeat_cold", "HEARTBEAT at -12.5 degC, 12.4 V", Heartbeat(3600, 12400, -1250, 2, 0, 1), 1),
        ("rain_no_clock", "RAIN, 0 tips, device clock not set", Rain(0, 5, 0), 2),
        ("rain_counter_max", "RAIN at the u32 counter limit", Rain(0xFFFFFFFF, 86400, 1767225600000), 3),
        (
            "seismic_int16",
            "SEISMIC, 4 int16 samples at 100 Hz, gain 8",
            Seismic(1000, 1767225600500, 100, 8, SampleFormat.INT16, (0, 1, -1, 32767)),
            4,
        ),
        (
            "seismic_int32_extremes",
            "SEISMIC, int32 extremes",
            Seismic(2**40, 0, 200, 1, SampleFormat.INT32, (-(2**31), 2**31 - 1, 0)),
            5,
        ),
        (
            "seismic_300_int16",
            "SEISMIC, 300 int16 samples (COBS blocks of 254 bytes)",
            Seismic(50, 0, 50, 1, SampleFormat.INT16, tuple((i * 97) % 4001 - 2000 for i in range(300))),
            6,
        ),
        (
            "wire_tripped",
            "WIRE tripped, first change since boot",
            Wire(WireState.TRIPPED, 1, 120, 1767225720000),
            7,
        ),
        ("wire_short", "WIRE short circuit", Wire(WireState.SHORT, 3, 500, 0), 8),
        ("command_set_clock", "COMMAND SET_CLOCK", Command(1, CommandCode.SET_CLOCK, 1767225600000), 9),
        ("command_self_test", "COMMAND SELF_TEST", Command(2, CommandCode.SELF_TEST, 0), 10),
        ("ack_self_test", "ACK of SELF_TEST, subsystem bit 2 failed", Ack(2, CommandCode.SELF_TEST, 0x4), 11),
        ("nack_unknown", "NACK of an unknown command 0x63", Nack(3, 0x63, NackReason.UNKNOWN_COMMAND), 12),
        ("seq_wrap", "RAIN with sequence number 65535", Rain(7, 70, 0), 65535),
    ]


def build_valid() -> list[dict[str, Any]]:
    out = []
    for name, description, message, seq in _valid_cases():
        raw = encode_raw(message, seq=seq, boot_id=BOOT)
        frame = Frame(1, layout_of(message).msg_type, seq, BOOT, message)
        out.append(
            {
                "name": name,
                "description": description,
                **frame_to_json(frame),
                "raw_hex": raw.hex(),
                "crc32c_hex": f"{crc32c(raw[: -TRAILER.size]):08x}",
                "wire_hex": encode_frame(message, seq=seq, boot_id=BOOT).hex(),
            }
        )
    return out


def _custom(version: int, type_id: int, payload: bytes, seq: int = 0, boot_id: int = BOOT) -> bytes:
    body = HEADER.pack(version, type_id, seq, boot_id) + payload
    return b"\x00" + cobs_encode(body + TRAILER.pack(crc32c(body))) + b"\x00"


def _streams() -> list[tuple[str, str, bytes]]:
    rain = encode_frame(Rain(10, 60, 0), seq=20, boot_id=BOOT)
    rain2 = encode_frame(Rain(11, 70, 0), seq=21, boot_id=BOOT)
    raw = bytearray(encode_raw(Rain(10, 60, 0), seq=20, boot_id=BOOT))
    raw[HEADER.size] ^= 0x01
    bad_crc = b"\x00" + cobs_encode(bytes(raw)) + b"\x00"
    seismic = encode_frame(Seismic(0, 0, 100, 1, SampleFormat.INT16, (5, 0, -5, 0)), seq=21, boot_id=BOOT)
    rain_payload = struct.pack("<IIQ", 1, 2, 3)
    return [
        ("bad_crc", "one payload bit flipped, then a good frame", bad_crc + rain2),
        ("truncated", "a frame cut after 9 bytes, then a good frame", rain[:9] + rain2),
        (
            "garbage_between",
            "good, 40 bytes of line noise, good",
            rain + bytes(range(1, 41)) + b"\x00\x00" + rain2,
        ),
        (
            "garbage_with_zeros",
            "noise containing 0x00 before a frame",
            b"\x13\x37\x00\xff\xfe\x00\x42" + rain2,
        ),
        ("version_2", "CRC-valid frame of protocol version 2", _custom(2, 0x03, rain_payload) + rain2),
        ("unknown_type", "CRC-valid frame of type 0x7f", _custom(1, 0x7F, b"\x01\x02") + rain2),
        (
            "rain_short_payload",
            "CRC-valid RAIN with 15 payload bytes",
            _custom(1, 0x03, rain_payload[:15]) + rain2,
        ),
        (
            "wire_state_9",
            "CRC-valid WIRE with state 9",
            _custom(1, 0x05, struct.pack("<BHIQ", 9, 1, 2, 3)) + rain2,
        ),
        ("boot_id_zero", "CRC-valid RAIN with boot id 0", _custom(1, 0x03, rain_payload, boot_id=0) + rain2),
        (
            "seismic_count_mismatch",
            "SEISMIC claiming 10 samples, carrying 4",
            _custom(1, 0x04, struct.pack("<QQHBBH", 0, 0, 100, 1, 0, 10) + struct.pack("<4h", 1, 2, 3, 4)),
        ),
        ("duplicate", "the same frame twice", rain + rain),
        (
            "seq_gap",
            "seq 20 then 24: 3 frames missing",
            rain + encode_frame(Rain(12, 80, 0), seq=24, boot_id=BOOT),
        ),
        ("oversize", "3000 bytes without a delimiter, then a good frame", bytes([0x55]) * 3000 + rain2),
        ("no_leading_delimiters", "frames with only the trailing 0x00", rain[1:] + rain2[1:]),
        (
            "idle_delimiters",
            "runs of 0x00 between frames are idle, not errors",
            b"\x00" * 5 + rain + b"\x00" * 3 + seismic,
        ),
        ("split_reads", "a frame split over the end of the stream (incomplete, pending)", rain + rain2[:7]),
    ]


def build_invalid() -> list[dict[str, Any]]:
    out = []
    for name, description, data in _streams():
        decoder = FrameDecoder()
        frames = decoder.decode(data)
        c = decoder.counters
        out.append(
            {
                "name": name,
                "description": description,
                "wire_hex": data.hex(),
                "expect": {
                    "frames": [frame_to_json(f) for f in frames],
                    "errors": {k.value: v for k, v in sorted(c.errors.items())},
                    "seq_gaps": c.seq_gaps,
                    "missing_frames": c.missing_frames,
                    "pending_bytes": decoder.pending,
                },
            }
        )
    return out


def write_all(directory: Path = VECTOR_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in (("valid.json", build_valid()), ("invalid.json", build_invalid())):
        path = directory / name
        path.write_text(json.dumps(doc, indent=1) + "\n")
        paths.append(path)
    return paths


def load(name: str, directory: Path = VECTOR_DIR) -> list[dict[str, Any]]:
    path = directory / name
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VectorError(
            f"cannot read test vectors {path}: {exc}", fix="python -m firmware_bridge.testvectors"
        ) from exc
    if not isinstance(doc, list):
        raise VectorError(f"{path} is not a JSON list", fix="python -m firmware_bridge.testvectors")
    return doc


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for written in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else VECTOR_DIR):
        logging.getLogger(__name__).info("wrote %s", written)
