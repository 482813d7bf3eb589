"""Bridge protocol codec: CRC-32C, COBS, the layout-driven encoder/decoder and the test-vector files."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.cobs import cobs_decode, cobs_encode
from firmware_bridge.codec import MAX_FRAME, FrameEncoder, decode_raw, encode_frame, encode_raw
from firmware_bridge.crc import crc32c, crc32c_reference
from firmware_bridge.errors import EncodeError, FrameError, FrameErrorKind
from firmware_bridge.layouts import HEADER, LAYOUTS, max_payload_size
from firmware_bridge.messages import Heartbeat, MsgType, Rain, SampleFormat, Seismic, Wire, WireState
from firmware_bridge.reader import BridgeReader, ErrorPolicy, FrameDecoder
from firmware_bridge.testvectors import build_invalid, build_valid, frame_to_json, load, message_from_json

# The worked examples of COBS (Cheshire & Baker; as listed on Wikipedia's COBS page).
COBS_EXAMPLES = [
    ("00", "0101"),
    ("0000", "010101"),
    ("11220033", "0311220233"),
    ("11223344", "0511223344"),
    ("11000000", "0211010101"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    ("00" + bytes(range(1, 255)).hex(), "01ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
    (bytes(range(3, 256)).hex() + "0001", "fe" + bytes(range(3, 256)).hex() + "0201"),
]


@pytest.mark.parametrize("fn", [crc32c, crc32c_reference])
def test_crc32c_check_value_and_incremental(fn: Callable[..., int]) -> None:
    assert fn(b"123456789") == 0xE3069283
    assert fn(b"") == 0
    assert fn(b"56789", fn(b"1234")) == 0xE3069283


def test_crc32c_library_equals_the_table_form() -> None:
    rng = random.Random(7)
    for n in (1, 3, 17, 64, 255, 1000):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc32c(data) == crc32c_reference(data)
        assert crc32c(data[n // 2 :], crc32c(data[: n // 2])) == crc32c_reference(data)


@pytest.mark.parametrize(("plain", "encoded"), COBS_EXAMPLES)
def test_cobs_reference_examples(plain: str, encoded: str) -> None:
    assert cobs_encode(bytes.fromhex(plain)).hex() == encoded
    assert cobs_decode(bytes.fromhex(encoded)).hex() == plain


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_cobs_roundtrip_has_no_zero(data: bytes) -> None:
    block = cobs_encode(data)
    assert 0 not in block
    assert len(block) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(block) == data


def test_cobs_rejects_truncated_block() -> None:
    with pytest.raises(FrameError) as err:
        cobs_decode(bytes.fromhex("0511223344")[:-1])
    assert err.value.kind is FrameErrorKind.BAD_COBS


def test_layout_table_is_consistent() -> None:
    assert HEADER.size == 8
    assert len({lay.msg_type for lay in LAYOUTS}) == len(LAYOUTS) == len(MsgType)
    for lay in LAYOUTS:
        assert lay.fixed.format.startswith("<"), f"{lay.msg_type.name} must be little-endian"
    assert max_payload_size() == 22 + 4 * 500
    assert MAX_FRAME == 8 + 2022 + 4


def test_valid_vectors_decode_and_reencode_byte_exact() -> None:
    vectors = load("valid.json")
    assert len(vectors) >= 14
    for vec in vectors:
        wire = bytes.fromhex(vec["wire_hex"])
        frames = FrameDecoder(policy=ErrorPolicy.RAISE).decode(wire)
        assert len(frames) == 1, vec["name"]
        got = frame_to_json(frames[0])
        assert got == {k: vec[k] for k in ("type", "seq", "boot_id", "fields")}, vec["name"]
        message = message_from_json(vec)
        assert encode_frame(message, seq=vec["seq"], boot_id=vec["boot_id"]).hex() == vec["wire_hex"]
        raw = encode_raw(message, seq=vec["seq"], boot_id=vec["boot_id"])
        assert raw.hex() == vec["raw_hex"]
        assert struct.unpack("<I", raw[-4:])[0] == int(vec["crc32c_hex"], 16) == crc32c(raw[:-4])


def test_invalid_vectors_counted_as_documented() -> None:
    vectors = load("invalid.json")
    names = {v["name"] for v in vectors}
    assert {"bad_crc", "truncated", "garbage_between", "oversize", "duplicate", "seq_gap"} <= names
    for vec in vectors:
        decoder = FrameDecoder()
        frames = decoder.decode(bytes.fromhex(vec["wire_hex"]))
        exp = vec["expect"]
        assert [frame_to_json(f) for f in frames] == exp["frames"], vec["name"]
        assert {k.value: n for k, n in decoder.counters.errors.items()} == exp["errors"], vec["name"]
        assert decoder.counters.seq_gaps == exp["seq_gaps"]
        assert decoder.counters.missing_frames == exp["missing_frames"]
        assert decoder.pending == exp["pending_bytes"]
        c = decoder.counters
        assert c.blocks == c.frames_ok + c.error_total()
        assert c.bytes_in == c.bytes_ok + c.bytes_dropped + c.delimiters + decoder.pending


def test_vector_files_match_the_generator() -> None:
    assert load("valid.json") == build_valid()
    assert load("invalid.json") == build_invalid()


def test_every_error_kind_has_a_vector() -> None:
    seen = set()
    for vec in load("invalid.json"):
        seen.update(vec["expect"]["errors"])
    assert seen == {k.value for k in FrameErrorKind}


def test_decode_each_error_kind_directly() -> None:
    good = encode_raw(Rain(1, 2, 3), seq=0, boot_id=7)
    with pytest.raises(FrameError) as err:
        decode_raw(good[:10])
    assert err.value.kind is FrameErrorKind.BAD_LENGTH
    flipped = bytearray(good)
    flipped[-1] ^= 0x80
    with pytest.raises(FrameError) as err:
        decode_raw(bytes(flipped))
    assert err.value.kind is FrameErrorKind.BAD_CRC
    with pytest.raises(FrameError) as err:
        decode_raw(good, version=2)
    assert err.value.kind is FrameErrorKind.VERSION_MISMATCH
    assert "version" in str(err.value) and "fix:" in str(err.value)


@pytest.mark.parametrize(
    "message",
    [
        Rain(-1, 0, 0),
        Rain(2**32, 0, 0),
        Heartbeat(0, 70000, 0, 0, 0, 0),
        Seismic(0, 0, 100, 1, SampleFormat.INT16, (40000,)),
        Seismic(0, 0, 100, 1, SampleFormat.INT32, tuple(range(501))),
    ],
)
def test_encoder_refuses_out_of_range(message: Rain | Heartbeat | Seismic) -> None:
    with pytest.raises(EncodeError):
        encode_frame(message, seq=0, boot_id=1)


def test_encoder_sequence_wraps_and_boot_id_random() -> None:
    enc = FrameEncoder(seq=65535)
    assert 0 < enc.boot_id < 2**32
    first = FrameDecoder().decode(enc.encode(Wire(WireState.INTACT, 0, 0, 0)) + enc.encode(Rain(0, 0, 0)))
    assert [f.seq for f in first] == [65535, 0]
    with pytest.raises(EncodeError):
        FrameEncoder(boot_id=0)


def test_raise_policy_raises_then_continues() -> None:
    enc = FrameEncoder(boot_id=0x1234)
    stream = enc.encode(Rain(1, 1, 0)) + b"\x09\x02\x03\x00" + enc.encode(Rain(2, 2, 0))
    decoder = FrameDecoder(policy=ErrorPolicy.RAISE)
    decoder.feed(stream)
    got = []
    with pytest.raises(FrameError) as err:
        for frame in decoder.frames():
            got.append(frame)
    assert err.value.kind is FrameErrorKind.BAD_COBS
    got.extend(decoder.frames())
    assert [f.message.tips for f in got if isinstance(f.message, Rain)] == [1, 2]


def test_reader_bulk_equals_byte_by_byte() -> None:
    enc = FrameEncoder(boot_id=99)
    data = b"noise" + b"".join(enc.encode(Rain(i, i, 0)) for i in range(200))
    bulk = list(BridgeReader(io.BytesIO(data)))

    class OneByte(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            return super().read(1)

    slow_reader = BridgeReader(OneByte(data))
    slow = list(slow_reader)
    assert bulk == slow
    assert len(bulk) == 200
    assert slow_reader.counters.errors == {FrameErrorKind.BAD_COBS: 1}


def test_stream_reader_raise_policy_resumes_after_each_error() -> None:
    enc = FrameEncoder(boot_id=0x77)
    data = enc.encode(Rain(1, 1, 0)) + b"\x09\x01\x00" + enc.encode(Rain(2, 2, 0)) + b"\x09\x01\x00"
    data += enc.encode(Rain(3, 3, 0))
    reader = BridgeReader(io.BytesIO(data), policy=ErrorPolicy.RAISE)
    tips, errors = [], []
    while True:
        try:
            frame = reader.read()
        except FrameError as exc:
            errors.append(exc.kind)
            continue
        if frame is None:
            break
        assert isinstance(frame.message, Rain)
        tips.append(frame.message.tips)
    assert tips == [1, 2, 3]
    assert errors == [FrameErrorKind.BAD_COBS, FrameErrorKind.BAD_COBS]


@pytest.mark.parametrize("chunk", [1, 7, 100, 5000])
def test_oversize_run_counted_once_whatever_the_read_size(chunk: int) -> None:
    enc = FrameEncoder(boot_id=5)
    data = enc.encode(Rain(1, 1, 0)) + b"\x55" * 5000 + enc.encode(Rain(2, 2, 0))
    decoder = FrameDecoder()
    frames = []
    for i in range(0, len(data), chunk):
        frames.extend(decoder.decode(data[i : i + chunk]))
    assert [f.message.tips for f in frames if isinstance(f.message, Rain)] == [1, 2]
    c = decoder.counters
    assert dict(c.errors) == {FrameErrorKind.OVERSIZE: 1}
    assert c.blocks == c.frames_ok + c.error_total()
    assert c.bytes_in == c.bytes_ok + c.bytes_dropped + c.delimiters + decoder.pending
