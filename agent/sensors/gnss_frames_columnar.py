"""A whole GNSS byte stream framed at once: the frames :class:`agent.sensors.gnss_frames.GnssFramer`
would find, as arrays (start, end, kind), with the same checks (UBX checksum and length limit; NMEA
line length, printable text, a comma, the XOR checksum).

The live framer walks the stream frame by frame. Here every ``b5 62`` and ``$`` is a candidate, each
candidate's end comes from its length field (UBX) or the next line feed (NMEA), and the frames are the
chain of candidates from byte 0, each starting where the previous one ended; a candidate inside a
payload is not on the chain, exactly as the live framer jumps over it. The stream is accepted only
when that chain covers every byte and every frame on it passes its checks: then the live framer, which
takes a valid frame wherever it stands, finds the same frames. Anything else (garbage between frames,
a bad checksum, a truncated tail) raises :class:`Unsupported` and the caller uses the live framer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.errors import Unsupported
from agent.sensors.gnss_frames import DEFAULT_MAX_NMEA_LEN, DEFAULT_MAX_UBX_PAYLOAD, UBX_OVERHEAD

UBX, NMEA = 0, 1
_HEX = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(b"0123456789ABCDEF"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"abcdef"):
    _HEX[_c] = 10 + _i


@dataclass
class FrameArrays:
    """The frames of a stream in order: byte offsets ``start`` / ``end`` (exclusive) and ``kind``."""

    buf: np.ndarray  # the stream, uint8
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray  # UBX | NMEA
    nmea_text: bytes = b""  # every NMEA line, joined in order (each ends with its line feed)

    def __len__(self) -> int:
        return len(self.start)


def segment_reduce(ufunc: np.ufunc, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ufunc.reduce(x[lo[i]:hi[i]])`` for every i (non-empty segments, ``lo`` ascending)."""
    padded = np.append(x, x[:1] if len(x) else np.zeros(1, dtype=x.dtype))
    bounds = np.empty(2 * len(lo), dtype=np.int64)
    bounds[0::2], bounds[1::2] = lo, hi
    return ufunc.reduceat(padded, bounds)[0::2]


def gather(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The disjoint, ascending segments ``x[lo[i]:hi[i]]`` joined, and where each starts in it."""
    lengths = hi - lo
    runs = np.empty(2 * len(lo) + 1, dtype=np.int64)  # gap, segment, gap, segment, ..., tail
    runs[0:-1:2] = lo - np.concatenate(([0], hi[:-1]))
    runs[1::2] = lengths
    runs[-1] = len(x) - (hi[-1] if len(hi) else 0)
    mask = np.repeat(np.tile(np.array([False, True]), len(lo) + 1)[: len(runs)], runs)
    return x[mask], np.cumsum(lengths) - lengths


def _chain(start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Indices of the candidates on the chain from byte 0 (each starts where the previous ended)."""
    if not len(start) or start[0] != 0:
        raise Unsupported("the stream does not start with a frame")
    if int(end[-1]) == n and np.array_equal(start[1:], end[:-1]):
        return np.arange(len(start))  # no candidate inside another frame: every one is a frame
    nxt = np.searchsorted(start, end)
    nxt = np.where((nxt < len(start)) & (start[np.minimum(nxt, len(start) - 1)] == end), nxt, -1)
    links = nxt.tolist()
    chain = []
    j = 0
    while j >= 0:
        chain.append(j)
        j = links[j]
    idx = np.asarray(chain, dtype=np.int64)
    if int(end[idx[-1]]) != n:
        raise Unsupported("bytes outside frames or a truncated frame")
    return idx


def frame_stream(data: bytes) -> FrameArrays:
    """Frame ``data`` (a whole stream); :class:`Unsupported` unless it is frames only, all valid."""
    b = np.frombuffer(data, dtype=np.uint8)
    n = len(b)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return FrameArrays(b, empty, empty, empty)
    u = np.flatnonzero((b[:-1] == 0xB5) & (b[1:] == 0x62))
    u = u[u + 6 <= n]
    ulen = b[u + 4].astype(np.int64) | (b[u + 5].astype(np.int64) << 8)
    dollar = np.flatnonzero(b == 0x24)
    lf = np.flatnonzero(b == 0x0A)
    k = np.searchsorted(lf, dollar)
    dend = np.where(k < len(lf), lf[np.minimum(k, max(len(lf) - 1, 0))] + 1 if len(lf) else n + 1, n + 1)
    start = np.concatenate((u, dollar)).astype(np.int64)
    end = np.concatenate((u + UBX_OVERHEAD + ulen, dend)).astype(np.int64)
    kind = np.concatenate((np.full(len(u), UBX), np.full(len(dollar), NMEA)))
    order = np.argsort(start, kind="stable")
    start, end, kind = start[order], end[order], kind[order]
    idx = _chain(start, end, n)
    frames = FrameArrays(b, start[idx], end[idx], kind[idx])
    _check_ubx(frames)
    _check_nmea(frames)
    return frames


def _check_ubx(f: FrameArrays) -> None:
    """Length limit and the 8-bit Fletcher checksum over class .. payload, for every UBX frame."""
    sel = f.kind == UBX
    s, e = f.start[sel], f.end[sel]
    if np.any(e - s - UBX_OVERHEAD > DEFAULT_MAX_UBX_PAYLOAD):
        raise Unsupported("a UBX frame over the payload limit")
    b = f.buf
    for length in np.unique(e - s):
        same = e - s == length
        body = b[s[same, None] + 2 + np.arange(int(length) - 4)]
        ck_a = body.sum(axis=1, dtype=np.uint32) & 0xFF
        # B = sum((L - i) * body[i]) as a matrix product: exact in float32 while below 2**24
        weights = np.arange(int(length) - 4, 0, -1, dtype=np.float64)
        exact32 = 255 * float(weights.sum()) < 2**24
        ftype = np.float32 if exact32 else np.float64
        ck_b = (body.astype(ftype) @ weights.astype(ftype)).astype(np.int64) & 0xFF
        if not (np.array_equal(ck_a, b[e[same] - 2]) and np.array_equal(ck_b, b[e[same] - 1])):
            raise Unsupported("a UBX checksum fails")


def _check_nmea(f: FrameArrays) -> None:
    """What the live framer checks of a line: length, printable, a comma, ``*hh`` and the XOR."""
    sel = f.kind == NMEA
    s, e = f.start[sel], f.end[sel]
    if not len(s):
        return
    b = f.buf
    if np.any(e - s > DEFAULT_MAX_NMEA_LEN):
        raise Unsupported("an NMEA line over the length limit")
    lf = e - 1
    cr = (b[np.maximum(lf - 1, s)] == 0x0D) & (lf - 1 >= s)
    line_end = lf - cr
    star = line_end - 3
    if np.any(star <= s) or np.any(b[line_end - 1] == 0x0D):
        raise Unsupported("an NMEA line too short or with several CR")
    text, off = gather(b, s, e)  # the lines joined: the checks below read only them
    f.nmea_text = text.tobytes()
    if np.count_nonzero(text == 0x24) != len(s):
        raise Unsupported("a '$' inside an NMEA line")
    if not np.all(((text >= 0x20) & (text < 0x7F)) | (text == 0x0D) | (text == 0x0A)):
        raise Unsupported("an NMEA line with unprintable bytes")
    if not np.all(segment_reduce(np.add, (text == 0x2C).view(np.uint8), off, off + (line_end - s))):
        raise Unsupported("an NMEA line without a comma")
    hi, lo = _HEX[b[star + 1]], _HEX[b[star + 2]]
    if np.any(b[star] != 0x2A) or np.any(hi < 0) or np.any(lo < 0):
        raise Unsupported("an NMEA line without *hh")
    xor = segment_reduce(np.bitwise_xor, text, off + 1, off + (star - s))
    if not np.array_equal(xor, (hi * 16 + lo).astype(np.uint8)):
        raise Unsupported("an NMEA checksum fails")


def nmea_headers(f: FrameArrays) -> tuple[np.ndarray, list[str]]:
    """For each NMEA frame (in order) an index into the returned list of identities (``GNGGA``...):
    the text between ``$`` and the first comma or star, as :func:`gnss_frames.nmea_identity`."""
    sel = f.kind == NMEA
    s = f.start[sel]
    b = f.buf
    marks = np.flatnonzero((b == 0x2C) | (b == 0x2A))
    stop = marks[np.searchsorted(marks, s + 1)]
    width = stop - s - 1
    if np.any(width > 8):
        raise Unsupported("an NMEA header longer than 8 characters")
    code = np.zeros(len(s), dtype=np.uint64)
    for j in range(8):
        byte = np.where(j < width, b[np.minimum(s + 1 + j, len(b) - 1)], 0).astype(np.uint64)
        code |= byte << np.uint64(8 * j)
    uniq, inverse = np.unique(code, return_inverse=True)
    names = [int(c).to_bytes(8, "little").rstrip(b"\x00").decode("ascii") for c in uniq]
    return inverse.astype(np.int64), names


def ubx_ids(f: FrameArrays) -> np.ndarray:
    """class * 256 + id of each UBX frame, in order."""
    s = f.start[f.kind == UBX]
    return f.buf[s + 2].astype(np.int64) * 256 + f.buf[s + 3]
