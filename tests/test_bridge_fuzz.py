"""Fuzz the bridge reader with corrupted frames: nothing escapes, nothing is invented, counters add up."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codec import FrameEncoder
from firmware_bridge.messages import (
    Ack,
    Capability,
    Command,
    Frame,
    Heartbeat,
    Hello,
    Message,
    Nack,
    NackReason,
    Rain,
    SampleFormat,
    Seismic,
    Wire,
    WireState,
)
from firmware_bridge.reader import FrameDecoder

log = logging.getLogger(__name__)

OPS = ("flip", "truncate", "garbage", "delete", "duplicate", "replace", "clean")


def _messages(rng: np.random.Generator, n: int) -> list[Message]:
    out: list[Message] = []
    for i in range(n):
        kind = i % 8
        if kind == 0:
            out.append(Hello(int(rng.integers(0, 2**63)), 1, 0, i, Capability(int(rng.integers(0, 64)))))
        elif kind == 1:
            out.append(Heartbeat(i, 12000 + i, -500 + i, 0, 1, 2))
        elif kind == 2:
            out.append(Rain(int(rng.integers(0, 2**32)), i, 0))
        elif kind == 3:
            n_s = int(rng.integers(1, 120))
            fmt = SampleFormat(int(rng.integers(0, 2)))
            lim = 2**15 if fmt is SampleFormat.INT16 else 2**31
            samples = tuple(int(x) for x in rng.integers(-lim, lim, n_s))
            out.append(Seismic(i * 50, 0, 100, 2, fmt, samples))
        elif kind == 4:
            out.append(Wire(WireState(i % 4), i, i, 0))
        elif kind == 5:
            out.append(Command(i, 2, -i))
        elif kind == 6:
            out.append(Ack(i, 1, i))
        else:
            out.append(Nack(i, 9, NackReason.BUSY))
    return out


def _corrupt(frame: bytes, op: str, rng: np.random.Generator) -> bytes:
    body = bytearray(frame)
    if op == "flip":
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(0, len(body)))
            body[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(body)
    if op == "truncate":
        return bytes(body[: int(rng.integers(0, len(body)))])
    if op == "garbage":
        return rng.integers(0, 256, int(rng.integers(1, 60)), dtype=np.uint8).tobytes() + frame
    if op == "delete":
        pos = int(rng.integers(0, len(body)))
        del body[pos : pos + int(rng.integers(1, 4))]
        return bytes(body)
    if op == "duplicate":
        return frame + frame
    if op == "replace":
        return rng.integers(0, 256, len(body), dtype=np.uint8).tobytes()
    return frame


def _check(decoder: FrameDecoder, accepted: list[Frame], originals: set[tuple[int, int, Message]]) -> None:
    c = decoder.counters
    assert c.blocks == c.frames_ok + c.error_total()
    assert c.bytes_in == c.bytes_ok + c.bytes_dropped + c.delimiters + decoder.pending
    assert c.frames_ok == len(accepted) == sum(c.by_type.values())
    for frame in accepted:
        assert (frame.seq, frame.boot_id, frame.message) in originals, "reader accepted a frame nobody sent"


def _pool(seed: int, n: int = 64) -> tuple[list[bytes], set[tuple[int, int, Message]]]:
    rng = np.random.default_rng(seed)
    enc = FrameEncoder(boot_id=0xC0FFEE)
    frames, originals = [], set()
    for msg in _messages(rng, n):
        originals.add((enc.seq, enc.boot_id, msg))
        frames.append(enc.encode(msg))
    return frames, originals


def _hypothesis_case(seed: int, ops: list[str], chunk: int) -> int:
    frames, originals = _pool(seed % 1000, 32)
    rng = np.random.default_rng(seed)
    stream = b"".join(_corrupt(frames[i % len(frames)], op, rng) for i, op in enumerate(ops))
    decoder = FrameDecoder()
    accepted: list[Frame] = []
    for start in range(0, len(stream), chunk):
        accepted.extend(decoder.decode(stream[start : start + chunk]))
    _check(decoder, accepted, originals)
    if all(op == "clean" for op in ops):
        assert len(accepted) == len(ops) and decoder.counters.error_total() == 0
    return sum(op != "clean" for op in ops)


_SEED = st.integers(0, 2**32 - 1)
_CHUNK = st.integers(1, 4096)


_LONG_FRAMES: list[int] = []


@settings(max_examples=1500, deadline=None)
@given(seed=_SEED, ops=st.lists(st.sampled_from(OPS[:-1]), min_size=70, max_size=100), chunk=_CHUNK)
def test_hypothesis_1e5_corrupted_frames(seed: int, ops: list[str], chunk: int) -> None:
    """Long form: 1500 examples x >= 70 corrupted frames = >= 10^5 corrupted frames through hypothesis."""
    _LONG_FRAMES.append(_hypothesis_case(seed, ops, chunk))


def test_corrupted_frames_between_clean_ones() -> None:
    """2x10^4 corrupted frames with clean frames between them: the clean ones survive."""
    frames, originals = _pool(1, 64)
    rng = np.random.default_rng(2026)
    decoder = FrameDecoder()
    accepted: list[Frame] = []
    started = time.perf_counter()
    corrupted = 0
    pending = bytearray()
    ops = rng.integers(0, len(OPS) - 1, 20_000)  # never "clean": every one of these is corrupted
    for i, op_i in enumerate(ops):
        pending += _corrupt(frames[i % len(frames)], OPS[int(op_i)], rng)
        corrupted += 1
        if i % 7 == 0:
            pending += frames[(i * 13) % len(frames)]
        if len(pending) > 8192:
            accepted.extend(decoder.decode(bytes(pending)))
            pending.clear()
    accepted.extend(decoder.decode(bytes(pending) + b"\x00"))
    elapsed = time.perf_counter() - started
    assert corrupted == 20_000
    _check(decoder, accepted, originals)
    c = decoder.counters
    # Every clean frame that followed a completed frame was accepted unless it repeated its predecessor.
    assert c.frames_ok >= 20_000 // 7 * 0.9
    assert c.error_total() > 16_000
    log.info("2e4 corrupted frames in %.1f s: %s", elapsed, c.as_dict())


@pytest.mark.faults
def test_random_bytes_only_never_accepted() -> None:
    rng = np.random.default_rng(7)
    decoder = FrameDecoder()
    accepted = []
    for _ in range(200):
        accepted.extend(decoder.decode(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    assert accepted == []
    c = decoder.counters
    assert c.blocks == c.error_total() > 1000


def test_long_form_threw_1e5_corrupted_frames() -> None:
    """Runs after the hypothesis long form in file order; skipped when that test was deselected."""
    if not _LONG_FRAMES:
        pytest.skip("test_hypothesis_1e5_corrupted_frames did not run in this session")
    assert sum(_LONG_FRAMES) >= 100_000
