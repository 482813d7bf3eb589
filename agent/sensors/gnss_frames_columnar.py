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

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from agent.errors import Unsupported
from agent.sensors.gnss_frames import DEFAULT_MAX_NMEA_LEN, DEFAULT_MAX_UBX_PAYLOAD, UBX_OVERHEAD

UBX, NMEA = 0, 1
_HEX = np.full(256, -1, dtype=np.int64)
for _i, _c in enumerate(b"0123456789ABCDEF"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"abcdef"):
    _HEX[_c] = 10 + _i
_LINE_BYTES = bytes(range(0x20, 0x7F)) + b"\r\n"  # printable ASCII, CR, LF
HEAD = 9  # bytes after a line's "$" that hold its header and first separator


@dataclass
class FrameArrays:
    """The frames of a stream in order: byte offsets ``start`` / ``end`` (exclusive) and ``kind``."""

    buf: np.ndarray  # the stream, uint8
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray  # UBX | NMEA
    nmea_text: bytes = b""  # every NMEA line, joined in order (each ends with its line feed)
    nmea_off: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # where each starts
    # the HEAD bytes after each '$' and where the first ',' or '*' is among them (HEAD: none)
    nmea_head: np.ndarray = field(default_factory=lambda: np.zeros((0, HEAD), dtype=np.uint8))
    nmea_mark: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

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
    u = np.flatnonzero(b[:-1] == 0xB5)
    u = u[(b[u + 1] == 0x62) & (u + 6 <= n)]
    uend = u + UBX_OVERHEAD + (b[u + 4].astype(np.int64) | (b[u + 5].astype(np.int64) << 8))
    good = (uend <= n) & (uend - u - UBX_OVERHEAD <= DEFAULT_MAX_UBX_PAYLOAD)
    good[good] = _ubx_checksum_ok(b, u[good], uend[good])
    dollar = np.flatnonzero(b == 0x24)
    lf = np.flatnonzero(b == 0x0A)
    k = np.searchsorted(lf, dollar)
    dend = np.where(k < len(lf), lf[np.minimum(k, max(len(lf) - 1, 0))] + 1 if len(lf) else n + 1, n + 1)
    # Most false '$' lie inside UBX payloads: drop those inside a checksum-valid UBX frame. If what
    # is left tiles the stream, it is the chain the live framer walks (each frame ends where the
    # next starts); else every candidate goes into the walk.
    gs, ge = u[good], uend[good]
    inside = np.searchsorted(gs, dollar, side="right") - 1
    covered = (inside >= 0) & (dollar < ge[np.maximum(inside, 0)]) if len(gs) else np.zeros(len(dollar), bool)
    start = np.concatenate((gs, dollar[~covered])).astype(np.int64)
    end = np.concatenate((ge, dend[~covered])).astype(np.int64)
    kind = np.concatenate((np.full(len(gs), UBX), np.full(int((~covered).sum()), NMEA)))
    order = np.argsort(start, kind="stable")
    start, end, kind = start[order], end[order], kind[order]
    if not (len(start) and start[0] == 0 and int(end[-1]) == n and np.array_equal(start[1:], end[:-1])):
        start = np.concatenate((u, dollar)).astype(np.int64)
        end = np.concatenate((uend, dend)).astype(np.int64)
        kind = np.concatenate((np.full(len(u), UBX), np.full(len(dollar), NMEA)))
        order = np.argsort(start, kind="stable")
        start, end, kind = start[order], end[order], kind[order]
        idx = _chain(start, end, n)
        start, end, kind = start[idx], end[idx], kind[idx]
        sel = kind == UBX
        limit = end[sel] - start[sel] - UBX_OVERHEAD <= DEFAULT_MAX_UBX_PAYLOAD
        if not (np.all(limit) and np.all(_ubx_checksum_ok(b, start[sel], end[sel]))):
            raise Unsupported("a UBX frame over the payload limit or with a bad checksum")
    frames = FrameArrays(b, start, end, kind)
    _check_nmea(frames)
    return frames


def _ubx_checksum_ok(b: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The 8-bit Fletcher checksum over class .. payload of each UBX frame ``b[s:e]``."""
    ok = np.zeros(len(s), dtype=bool)
    for length in np.unique(e - s).tolist():
        same = np.flatnonzero(e - s == length)
        body = sliding_window_view(b, length)[s[same]][:, 2:-2]
        # A = sum(body[i]), B = sum((L - i) * body[i]): one matrix product, exact in float32 below 2**24
        weights = np.stack((np.ones(length - 4), np.arange(length - 4, 0, -1)), axis=1)
        ftype = np.float32 if 255 * float(weights[:, 1].sum()) < 2**24 else np.float64
        ck = (body.astype(ftype) @ weights.astype(ftype)).astype(np.int64) & 0xFF
        ck_a, ck_b = ck[:, 0], ck[:, 1]
        ok[same] = (ck_a == b[s[same] + length - 2]) & (ck_b == b[s[same] + length - 1])
    return ok


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
    f.nmea_text, f.nmea_off = text.tobytes(), off
    if f.nmea_text.count(b"$") != len(s):
        raise Unsupported("a '$' inside an NMEA line")
    if f.nmea_text.translate(None, _LINE_BYTES):  # what is left: bytes no line may hold
        raise Unsupported("an NMEA line with unprintable bytes")
    _header_window(f)
    # a comma among the bytes after '$' before the first '*' proves one; the lines it does not
    # prove (a '*' first, or a header longer than the window) are searched one by one
    n_line = line_end - s
    mark = f.nmea_mark
    proven = (mark < HEAD) & (mark + 1 < n_line)
    proven[proven] = f.nmea_head[np.flatnonzero(proven), mark[proven]] == 0x2C
    for i in np.flatnonzero(~proven).tolist():
        if f.nmea_text.find(b",", int(off[i]), int(off[i] + n_line[i])) < 0:
            raise Unsupported("an NMEA line without a comma")
    hi, lo = _HEX[b[star + 1]], _HEX[b[star + 2]]
    if np.any(b[star] != 0x2A) or np.any(hi < 0) or np.any(lo < 0):
        raise Unsupported("an NMEA line without *hh")
    xor = segment_reduce(np.bitwise_xor, text, off + 1, off + (star - s))
    if not np.array_equal(xor, (hi * 16 + lo).astype(np.uint8)):
        raise Unsupported("an NMEA checksum fails")


def _header_window(f: FrameArrays) -> None:
    """``nmea_head`` and ``nmea_mark`` of the joined lines (``nmea_text`` / ``nmea_off``)."""
    b = np.frombuffer(f.nmea_text + bytes(HEAD), dtype=np.uint8)
    f.nmea_head = sliding_window_view(b, HEAD)[f.nmea_off + 1]
    mark = (f.nmea_head == 0x2C) | (f.nmea_head == 0x2A)
    f.nmea_mark = np.where(mark.any(axis=1), np.argmax(mark, axis=1), HEAD)


def nmea_headers(f: FrameArrays) -> tuple[np.ndarray, list[str]]:
    """For each NMEA frame (in order) an index into the returned list of identities (``GNGGA``...):
    the text between ``$`` and the first comma or star, as :func:`gnss_frames.nmea_identity`."""
    # set by frame_stream's checks, which also made sure every line has a '*' and a ','
    width = f.nmea_mark
    if not len(width):
        return np.zeros(0, dtype=np.int64), []
    # a line is at least 5 bytes long and ends with "*hh\n": the first ',' or '*' among the HEAD
    # bytes after '$' is in the line, unless the header is longer than HEAD - 1 characters
    if np.any(width >= HEAD):
        raise Unsupported(f"an NMEA header longer than {HEAD - 1} characters")
    head = np.where(np.arange(HEAD - 1) < width[:, None], f.nmea_head[:, : HEAD - 1], 0).astype(np.uint8)
    code = np.ascontiguousarray(head).view("<u8").ravel()
    uniq, inverse = np.unique(code, return_inverse=True)
    names = [int(c).to_bytes(8, "little").rstrip(b"\x00").decode("ascii") for c in uniq]
    return inverse.astype(np.int64), names


def ubx_ids(f: FrameArrays) -> np.ndarray:
    """class * 256 + id of each UBX frame, in order."""
    s = f.start[f.kind == UBX]
    return f.buf[s + 2].astype(np.int64) * 256 + f.buf[s + 3]
