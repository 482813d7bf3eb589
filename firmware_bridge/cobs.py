"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): removes every 0x00 from a frame so 0x00 can
delimit frames on the wire. Overhead: one byte per 254 bytes, plus one.
"""

from __future__ import annotations

from firmware_bridge.errors import FrameError, FrameErrorKind

_CODES = tuple(bytes((i,)) for i in range(256))


def cobs_encode(data: bytes) -> bytes:
    """Encode ``data`` (any bytes) into a COBS block that contains no 0x00 byte (canonical form)."""
    out: list[bytes] = []
    append = out.append
    segments = data.split(b"\x00")
    last = len(segments) - 1
    for k, segment in enumerate(segments):
        n = len(segment)
        if n < 254:
            append(_CODES[n + 1])
            append(segment)
            continue
        while len(segment) >= 254:
            append(b"\xff")
            append(segment[:254])
            segment = segment[254:]
            if not segment and k == last:
                return b"".join(out)  # canonical form: no trailing 0x01 after a full final block
        append(_CODES[len(segment) + 1])
        append(segment)
    return b"".join(out)


def cobs_decode(block: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS block (without its 0x00 delimiter). Raises FrameError(BAD_COBS) if it is malformed."""
    data = bytes(block)
    if 0 in data:
        raise FrameError(
            FrameErrorKind.BAD_COBS,
            "COBS block contains a 0x00 byte",
            fix="split the stream on 0x00 before decoding each block",
        )
    # Each code byte after the first becomes the 0x00 its predecessor implied (or vanishes after a
    # 0xFF code, which implies none); the first code byte vanishes. One cheap step per code byte.
    out = bytearray(data)
    n = len(data)
    vanish = [0]
    i = 0
    prev_ff = False
    while i < n:
        if i:
            if prev_ff:
                vanish.append(i)
            else:
                out[i] = 0
        code = data[i]
        prev_ff = code == 0xFF
        i += code
    if i > n:
        raise FrameError(
            FrameErrorKind.BAD_COBS,
            f"COBS block of {n} bytes: its last code byte runs {i - n} bytes past the end",
            fix="the frame was truncated or corrupted on the line; it is dropped",
        )
    for pos in reversed(vanish):
        del out[pos]
    return bytes(out)
