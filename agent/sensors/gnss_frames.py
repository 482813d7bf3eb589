"""Incremental framer for a mixed UBX + NMEA byte stream; parsing is done by pyubx2 / pynmeagps.

Why not ``pyubx2.UBXReader`` over the stream: on a false ``b5 62`` header it consumes ``length + 2``
bytes (up to 64 KiB of good data), and a non-UTF-8 byte after ``$`` raises ``UnicodeDecodeError``
out of ``read()`` (it stops on the real M8P base log in ../shared/data). This framer only finds frame
boundaries and checks the checksum; a bad frame costs one byte of resync, never the frames after it.
Every decoded frame is handed to ``UBXReader.parse`` / ``NMEAReader.parse``. Bytes arrive through
``feed()`` in any chunking (a serial ``read(in_waiting)``, a file block) and the result does not
depend on the chunk boundaries.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pynmeagps import NMEAReader
from pyubx2 import UBX_MSGIDS, UBXReader

from agent.sensors.gnss_fast import FAST_TYPES, parse_nmea, parse_ubx

log = logging.getLogger(__name__)

UBX_SYNC = b"\xb5\x62"
NMEA_START = 0x24  # '$'
UBX_HEADER_LEN = 6
UBX_OVERHEAD = 8  # header (6) + checksum (2)
DEFAULT_MAX_UBX_PAYLOAD = 8192  # larger "frames" are taken as a false header (protocol max is 65535)
DEFAULT_MAX_NMEA_LEN = 128  # NMEA 0183 says 82; u-blox PUBX and long GSV variants stay below this

# Error counter names; their sum is ``FrameCounters.errors``.
ERROR_KINDS = (
    "ubx_bad_checksum",
    "ubx_too_long",
    "ubx_parse_error",
    "nmea_bad_checksum",
    "nmea_bad_line",
    "nmea_parse_error",
    "truncated",
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One checksum-valid frame: protocol ("UBX" | "NMEA"), identity, raw bytes, parsed message or None."""

    protocol: str
    identity: str  # "NAV-PVT", "GNGGA", ...
    raw: bytes
    msg: Any  # pyubx2.UBXMessage | pynmeagps.NMEAMessage | None when not asked to parse this type


@dataclass
class FrameCounters:
    """What the framer saw: ``skipped_bytes`` lie outside any valid frame, ``resyncs`` count their runs."""

    bytes: int = 0
    frames: int = 0
    frame_bytes: int = (
        0  # bytes inside checksum-valid frames; frame_bytes + skipped_bytes == bytes at the end
    )
    skipped_bytes: int = 0
    resyncs: int = 0
    errors_by_kind: Counter[str] = field(default_factory=lambda: Counter(dict.fromkeys(ERROR_KINDS, 0)))
    messages: Counter[str] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_kind.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "frames": self.frames,
            "frame_bytes": self.frame_bytes,
            "skipped_bytes": self.skipped_bytes,
            "resyncs": self.resyncs,
            "errors": self.errors,
            "errors_by_kind": dict(self.errors_by_kind),
            "messages": dict(sorted(self.messages.items())),
        }


def ubx_checksum(body: bytes | bytearray | memoryview) -> bytes:
    """8-bit Fletcher checksum over class, id, length and payload (u-blox interface description).

    The running sums in closed form: A = sum(b_i), B = sum((n - i) b_i), both mod 256 (C-speed)."""
    n = len(body)
    return bytes((sum(body) & 0xFF, sum(map(operator.mul, body, range(n, 0, -1))) & 0xFF))


def nmea_checksum_ok(line: bytes) -> bool:
    """``line`` is ``$...*hh`` without CR LF; True when the XOR of the body matches ``hh``."""
    star = line.rfind(b"*")
    if star < 1 or len(line) - star != 3:
        return False
    x = 0
    for byte in line[1:star]:
        x ^= byte
    try:
        return x == int(line[star + 1 :], 16)
    except ValueError:
        return False


def ubx_identity(cls_id: bytes) -> str:
    name = UBX_MSGIDS.get(cls_id)
    return str(name) if name is not None else f"UBX-{cls_id[0]:02X}-{cls_id[1]:02X}"


def nmea_identity(line: bytes) -> str:
    head = line[1:].split(b",", 1)[0].split(b"*", 1)[0]
    return head.decode("ascii", errors="replace")


def _printable(line: bytes) -> bool:
    return all(0x20 <= c < 0x7F or c == 0x0D for c in line)


class GnssFramer:
    """Push bytes in, get checksum-valid frames out; counts every byte it cannot place.

    ``parse_types``: identities to parse fully (others are counted by header only, which is much
    faster for RXM-RAWX and the like); ``None`` parses everything. NMEA identities are matched on
    the sentence type without talker (``"GGA"`` matches ``GNGGA`` and ``GPGGA``). ``fast``: NAV-PVT,
    NAV-HPPOSLLH, GGA and RMC are decoded at fixed offsets (agent/sensors/gnss_fast.py, the same
    values as pyubx2 / pynmeagps; anything unusual still goes to them); False: always the libraries.
    """

    def __init__(
        self,
        parse_types: frozenset[str] | None = None,
        *,
        max_ubx_payload: int = DEFAULT_MAX_UBX_PAYLOAD,
        max_nmea_len: int = DEFAULT_MAX_NMEA_LEN,
        name: str = "gnss",
        quiet_s: float = 10.0,
        fast: bool = True,
    ) -> None:
        self.name = name
        self.fast = fast
        self.quiet_s = quiet_s  # at most one WARNING per quiet_s, with the count of errors in between
        self._last_report = -math.inf
        self._suppressed = 0
        self.parse_types = parse_types
        self.max_ubx_payload = max_ubx_payload
        self.max_nmea_len = max_nmea_len
        self.counters = FrameCounters()
        self._buf = bytearray()
        self._in_skip = False

    # -- public ------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Frame]:
        self.counters.bytes += len(data)
        self._buf += data
        out: list[Frame] = []
        pos = self._scan(out, final=False)
        del self._buf[:pos]
        return out

    def finish(self) -> list[Frame]:
        """End of stream: whatever is left is a truncated frame or garbage (both counted)."""
        out: list[Frame] = []
        pos = self._scan(out, final=True)
        rest = len(self._buf) - pos
        if rest > 0:
            if self._buf[pos] == NMEA_START or self._buf[pos : pos + 2] == UBX_SYNC:
                self._count_error("truncated")
            self._skip(rest)
        self._buf.clear()
        return out

    # -- scanning ------------------------------------------------------------------------------------
    def _skip(self, n: int) -> None:
        if n <= 0:
            return
        self.counters.skipped_bytes += n
        if not self._in_skip:
            self.counters.resyncs += 1
            self._in_skip = True

    def _count_error(self, kind: str) -> None:
        self.counters.errors_by_kind[kind] += 1
        now = time.monotonic()
        if now - self._last_report >= self.quiet_s:
            more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
            log.warning("%s: dropped bytes: %s%s", self.name, kind, more)
            self._suppressed = 0
            self._last_report = now
        else:
            self._suppressed += 1

    def _next_sync(self, pos: int) -> int:
        buf = self._buf
        u = buf.find(UBX_SYNC, pos)
        n = buf.find(b"$", pos)
        if u < 0:
            return n
        if n < 0:
            return u
        return min(u, n)

    def _scan(self, out: list[Frame], *, final: bool) -> int:
        buf = self._buf
        pos = 0
        end = len(buf)
        while pos < end:
            sync = self._next_sync(pos)
            if sync < 0:
                # keep a trailing 0xb5 that may be the first half of a sync word
                keep = 1 if buf[end - 1] == 0xB5 and not final else 0
                self._skip(end - keep - pos)
                return end - keep
            self._skip(sync - pos)
            pos = sync
            consumed = self._try_ubx(pos, out, final) if buf[pos] == 0xB5 else self._try_nmea(pos, out, final)
            if consumed == 0:  # incomplete frame: wait for more bytes
                return pos
            if consumed < 0:  # not a frame here: drop one byte and rescan
                self._skip(1)
                pos += 1
                continue
            self._in_skip = False
            pos += consumed
        return pos

    def _try_ubx(self, pos: int, out: list[Frame], final: bool) -> int:
        buf = self._buf
        if len(buf) - pos < UBX_HEADER_LEN:
            return -1 if final else 0
        length = int.from_bytes(buf[pos + 4 : pos + 6], "little")
        if length > self.max_ubx_payload:
            self._count_error("ubx_too_long")
            return -1
        total = length + UBX_OVERHEAD
        if len(buf) - pos < total:
            return -1 if final else 0
        frame = bytes(buf[pos : pos + total])
        if ubx_checksum(frame[2:-2]) != frame[-2:]:
            self._count_error("ubx_bad_checksum")
            return -1
        identity = ubx_identity(frame[2:4])
        msg: Any = None
        if self.parse_types is None or identity in self.parse_types:
            try:
                if self.fast and identity in FAST_TYPES:
                    msg = parse_ubx(identity, frame)
                if msg is None:
                    msg = UBXReader.parse(frame)
            except Exception as exc:  # third-party parser boundary: any failure is a counted drop
                self._count_error("ubx_parse_error")
                log.debug("pyubx2 could not parse %s: %s", identity, exc)
                self.counters.frames += 1
                self.counters.frame_bytes += total
                return total
        self._emit(out, Frame("UBX", identity, frame, msg), total)
        return total

    def _try_nmea(self, pos: int, out: list[Frame], final: bool) -> int:
        buf = self._buf
        limit = min(len(buf), pos + self.max_nmea_len)
        lf = buf.find(b"\n", pos, limit)
        if lf < 0:
            # a '$' inside binary data must not stall the stream: give up early on non-ASCII
            if len(buf) - pos < self.max_nmea_len and not final and _printable(bytes(buf[pos:limit])):
                return 0
            self._count_error("nmea_bad_line")
            return -1
        line = bytes(buf[pos:lf]).rstrip(b"\r")
        if not _printable(line) or b"," not in line:
            self._count_error("nmea_bad_line")
            return -1
        if not nmea_checksum_ok(line):
            self._count_error("nmea_bad_checksum")
            return -1
        identity = nmea_identity(line)
        raw = line + b"\r\n"
        msg: Any = None
        want = self.parse_types is None or identity[2:] in self.parse_types or identity in self.parse_types
        if want:
            try:
                if self.fast and identity[2:] in FAST_TYPES:
                    msg = parse_nmea(raw)
                if msg is None:
                    msg = NMEAReader.parse(raw)
            except Exception as exc:  # third-party parser boundary: any failure is a counted drop
                self._count_error("nmea_parse_error")
                log.debug("pynmeagps could not parse %s: %s", identity, exc)
                self.counters.frames += 1
                self.counters.frame_bytes += lf + 1 - pos
                return lf + 1 - pos
        self._emit(out, Frame("NMEA", identity, raw, msg), lf + 1 - pos)
        return lf + 1 - pos

    def _emit(self, out: list[Frame], frame: Frame, size: int) -> None:
        self.counters.frames += 1
        self.counters.frame_bytes += size
        self.counters.messages[frame.identity] += 1
        out.append(frame)


def iter_frames(stream: BinaryIO, framer: GnssFramer, block: int = 65536) -> Iterator[Frame]:
    """Read ``stream`` in bulk blocks and yield its frames (then the end-of-stream remainder)."""
    while True:
        data = stream.read(block)
        if not data:
            break
        yield from framer.feed(data)
    yield from framer.finish()
