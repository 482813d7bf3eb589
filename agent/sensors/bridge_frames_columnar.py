"""A whole bridge byte stream deframed at once: the frames and counters of
:class:`firmware_bridge.reader.FrameDecoder`, with the SEISMIC frames (nine in ten) decoded as arrays.

Blocks are the bytes between ``0x00`` delimiters. Every block is COBS-decoded in parallel (one step per
code byte, all blocks at once) and checked like ``codec.decode_raw`` (length, CRC-32C, version, boot
id, layout); a SEISMIC frame that passes is kept as columns (header, fields, the samples joined), every
other block goes through ``codec.decode_block`` itself, so its frame or its error is the reader's. The
sequence rules of ``FrameDecoder._check_sequence`` then run over the accepted frames in order.
Unsupported: an oversize block, a duplicate frame (the reader drops it by its sequence number).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from agent.errors import Unsupported
from firmware_bridge.codec import MAX_ENCODED, MIN_FRAME, decode_block
from firmware_bridge.crc import crc32c
from firmware_bridge.errors import FrameError
from firmware_bridge.messages import MAX_SEISMIC_SAMPLES, PROTOCOL_VERSION, Frame, MsgType
from firmware_bridge.reader import SEQ_HALF, SEQ_MOD, ReaderCounters

SEISMIC_FIXED = np.dtype(
    [("first_index", "<u8"), ("device_time_ms", "<u8"), ("rate_hz", "<u2"), ("gain", "u1"),
     ("sample_format", "u1"), ("n", "<u2")]
)  # fmt: skip  # firmware_bridge/layouts.py SEISMIC "<QQHBBH"
HEAD = 8  # "<BBHI": version, type, seq, boot id
ELEMENT: dict[int, np.dtype[np.signedinteger]] = {
    0: np.dtype("<i2"),
    1: np.dtype("<i4"),
}  # SampleFormat -> element type


@dataclass
class BridgeFrames:
    """Accepted frames in stream order. ``seismic`` marks the SEISMIC ones, whose fields are in the
    ``seis_*`` columns (one row per SEISMIC frame, in order); ``frames`` holds the others (None where
    the frame is SEISMIC). ``record`` is the read whose bytes completed each frame."""

    record: np.ndarray
    boot: np.ndarray
    seismic: np.ndarray
    frames: list[Frame | None]
    seis: np.ndarray  # SEISMIC_FIXED rows
    seis_counts: list[np.ndarray]  # int32 samples per SEISMIC frame (rows of ``seis_groups``)
    seis_groups: list[tuple[int, np.ndarray]]  # (sample format, int32 samples of blocks alike)
    counters: ReaderCounters = field(default_factory=ReaderCounters)


def cobs_decode_all(
    b: np.ndarray, bs: np.ndarray, be: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COBS-decode the blocks ``b[bs[i]:be[i]]`` (every non-empty run between the zero bytes of the
    stream ``b``, the tail after the last zero left out) at once: (decoded bytes joined, each block's start in
    them, block is well formed). Each code byte after a block's first becomes 0x00 (or vanishes after
    a 0xFF code); the first vanishes (firmware_bridge/cobs.py, one step per code byte)."""
    ok = np.ones(len(bs), dtype=bool)
    pos, end, ids = bs.copy(), be.copy(), np.arange(len(bs))
    ff = np.zeros(len(bs), dtype=bool)  # the code before was 0xFF (implies no zero)
    removed, removed_of, zeroed = [bs], [ids], []
    while len(pos):  # one step per code byte, every block at once
        code = b[pos].astype(np.int64)
        nxt = pos + code
        ok[ids[nxt > end]] = False
        more = nxt < end
        pos, end, ids, ff = nxt[more], end[more], ids[more], (code == 0xFF)[more]
        removed.append(pos[ff])
        removed_of.append(ids[ff])
        zeroed.append(pos[~ff])
    keep = b != 0  # the delimiters: no COBS block holds a zero byte
    keep[int(be[-1]) if len(be) else 0 :] = False  # and the unterminated tail
    keep[np.concatenate(removed)] = False
    value = b.copy()
    if zeroed:
        value[np.concatenate(zeroed)] = 0
    dlen = (be - bs) - np.bincount(np.concatenate(removed_of), minlength=len(bs))
    return value[keep], np.cumsum(dlen) - dlen, ok


def deframe(data: bytes, rec_end: np.ndarray) -> BridgeFrames:
    """All frames of one bridge port's stream (``rec_end``: end offset of each read in ``data``)."""
    b = np.frombuffer(data, dtype=np.uint8)
    zeros = np.flatnonzero(b == 0)
    c = ReaderCounters(bytes_in=len(b), delimiters=len(zeros))
    starts = np.concatenate(([0], zeros + 1))[: len(zeros)]
    ends = zeros
    nonempty = ends > starts
    bs, be = starts[nonempty], ends[nonempty]
    tail = len(b) - (int(zeros[-1]) + 1 if len(zeros) else 0)
    if np.any(be - bs > MAX_ENCODED) or tail > MAX_ENCODED:
        raise Unsupported("an oversize bridge block")
    c.blocks = len(bs)
    dec, dstart, cobs_ok = cobs_decode_all(b, bs, be)
    dlen = np.diff(np.append(dstart, len(dec)))
    fast = cobs_ok & (dlen >= MIN_FRAME + SEISMIC_FIXED.itemsize)
    hs = np.minimum(dstart, max(len(dec) - HEAD, 0))
    fast &= (dec[hs] == PROTOCOL_VERSION) & (dec[np.minimum(hs + 1, len(dec) - 1)] == int(MsgType.SEISMIC))
    cand = np.flatnonzero(fast)
    fixed = _rows(dec, dstart[cand] + HEAD, SEISMIC_FIXED)
    size = np.where(fixed["sample_format"] == 0, 2, 4)
    fast_c = (fixed["sample_format"] <= 1) & (fixed["n"] <= MAX_SEISMIC_SAMPLES)
    fast_c &= (fixed["rate_hz"] > 0) & (fixed["gain"] > 0)
    fast_c &= dlen[cand] == HEAD + SEISMIC_FIXED.itemsize + fixed["n"].astype(np.int64) * size + 4
    boot_all = _u32(dec, np.minimum(hs + 4, max(len(dec) - 4, 0)))
    fast_c &= boot_all[cand] != 0
    view = memoryview(dec.tobytes())
    for k, i in enumerate(cand.tolist()):  # CRC-32C in C, one call per frame
        if fast_c[k]:
            lo, hi = int(dstart[i]), int(dstart[i] + dlen[i])
            fast_c[k] = crc32c(view[lo : hi - 4]) == int.from_bytes(view[hi - 4 : hi], "little")
    is_fast = np.zeros(len(bs), dtype=bool)
    is_fast[cand[fast_c]] = True
    frames: list[Frame | None] = []
    accepted: list[int] = []
    for i in range(len(bs)):
        if is_fast[i]:
            frames.append(None)
            accepted.append(i)
            continue
        try:
            frame = decode_block(data[int(bs[i]) : int(be[i])])
        except FrameError as exc:
            c.errors[exc.kind] += 1
            c.bytes_dropped += int(be[i] - bs[i])
            continue
        frames.append(frame)
        accepted.append(i)
    acc = np.asarray(accepted, dtype=np.int64)
    seis_rows = fixed[fast_c]
    counts, groups = _samples(dec, dstart[cand[fast_c]] + HEAD + SEISMIC_FIXED.itemsize, seis_rows)
    seq = _u16(dec, np.minimum(dstart[acc] + 2, max(len(dec) - 2, 0)))
    boot = boot_all[acc]
    _sequence(c, boot, seq)
    c.frames_ok = len(acc)
    c.bytes_ok = int((be[acc] - bs[acc]).sum())
    by_type: Counter[str] = Counter()
    by_type["SEISMIC"] = int(is_fast.sum())
    for f in frames:
        if f is not None:
            by_type[f.msg_type.name] += 1
    c.by_type = Counter({k: v for k, v in by_type.items() if v})
    record = np.searchsorted(rec_end, be[acc] + 1, side="left")  # the read holding the closing 0x00
    return BridgeFrames(record, boot, is_fast[acc], frames, seis_rows, counts, groups, c)


def _samples(
    dec: np.ndarray, at: np.ndarray, rows: np.ndarray
) -> tuple[list[np.ndarray], list[tuple[int, np.ndarray]]]:
    """The int32 samples of each SEISMIC frame (at ``at`` in ``dec``), read group by group of frames
    with the same format and count (one gather each)."""
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int32)] * len(at)
    groups = []
    key = rows["sample_format"].astype(np.int64) * 65536 + rows["n"]
    for k in np.unique(key).tolist():
        fmt, n = divmod(k, 65536)
        same = np.flatnonzero(key == k)
        elem = ELEMENT[fmt]
        raw = (
            sliding_window_view(dec, n * elem.itemsize)[at[same]] if n else np.zeros((len(same), 0), np.uint8)
        )
        block = np.ascontiguousarray(raw).view(elem).astype(np.int32)
        groups.append((fmt, block))
        for j, row in zip(same.tolist(), block, strict=True):
            out[j] = row
    return out, groups


def _rows(dec: np.ndarray, at: np.ndarray, dtype: np.dtype[np.void]) -> np.ndarray:
    if not len(at):
        return np.zeros(0, dtype=dtype)
    return np.ascontiguousarray(dec[at[:, None] + np.arange(dtype.itemsize)]).view(dtype).ravel()


def _u16(dec: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (
        dec[at].astype(np.int64) | (dec[at + 1].astype(np.int64) << 8) if len(at) else np.zeros(0, np.int64)
    )


def _u32(dec: np.ndarray, at: np.ndarray) -> np.ndarray:
    out = np.zeros(len(at), dtype=np.int64)
    if len(dec):
        for k in range(4):
            out |= dec[np.minimum(at + k, len(dec) - 1)].astype(np.int64) << (8 * k)
    return out


def _sequence(c: ReaderCounters, boot: np.ndarray, seq: np.ndarray) -> None:
    """FrameDecoder._check_sequence over the accepted frames in order."""
    if not len(boot):
        return
    same = np.concatenate(([False], boot[1:] == boot[:-1]))
    c.reboots = int(np.count_nonzero(~same[1:]))
    step = np.concatenate(([0], (seq[1:] - seq[:-1]) % SEQ_MOD))[same]
    if np.any(step == 0):
        raise Unsupported("a duplicate bridge frame (the reader drops it by sequence)")
    c.seq_backwards = int(np.count_nonzero(step >= SEQ_HALF))
    forward = step[(step > 1) & (step < SEQ_HALF)]
    c.seq_gaps = len(forward)
    c.missing_frames = int((forward - 1).sum())
