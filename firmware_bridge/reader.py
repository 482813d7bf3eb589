"""Host-side reader of bridge frames, modelled on pyubx2's UBXReader.

:class:`FrameDecoder` is push-based (``feed(bytes)``, then iterate ``frames()``): the serial-port thread
feeds it whatever arrived. :class:`BridgeReader` wraps any stream with ``read(n)`` (a pyserial port, a
file, a socket file) and reads in bulk. Both resync on the next 0x00 after garbage, count every dropped
block by kind, track sequence numbers per boot id, and either count-and-skip or raise per ``policy``.

Accounting invariant (tested): every non-empty block between delimiters is exactly one of
accepted frame, duplicate, or one error kind, so ``blocks == frames_ok + sum(errors)``; and
``bytes_in == bytes_ok + bytes_dropped + delimiters + pending``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from firmware_bridge.codec import MAX_ENCODED, decode_block
from firmware_bridge.errors import FrameError, FrameErrorKind
from firmware_bridge.messages import PROTOCOL_VERSION, Frame

log = logging.getLogger(__name__)

SEQ_MOD = 1 << 16
SEQ_HALF = 1 << 15


class ErrorPolicy(Enum):
    SKIP = "skip"  # count, log once per burst, go on with the next frame
    RAISE = "raise"  # count, then raise FrameError for the caller


@dataclass
class ReaderCounters:
    """What the reader saw. Errors are counted per FrameErrorKind."""

    bytes_in: int = 0
    bytes_ok: int = 0  # COBS bytes of accepted frames
    bytes_dropped: int = 0  # COBS bytes of dropped blocks (garbage, corrupted frames, duplicates)
    delimiters: int = 0
    blocks: int = 0  # non-empty blocks between delimiters (incl. oversize runs)
    frames_ok: int = 0
    errors: Counter[FrameErrorKind] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    seq_gaps: int = 0  # times the sequence number jumped forward by more than one
    missing_frames: int = 0  # frames implied missing by those jumps
    seq_backwards: int = 0  # sequence went backwards within a boot (accepted, re-anchored)
    reboots: int = 0  # boot id changed

    def error_total(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "bytes_in": self.bytes_in,
            "bytes_ok": self.bytes_ok,
            "bytes_dropped": self.bytes_dropped,
            "delimiters": self.delimiters,
            "blocks": self.blocks,
            "frames_ok": self.frames_ok,
            "errors": {k.value: v for k, v in sorted(self.errors.items(), key=lambda kv: kv[0].value)},
            "by_type": dict(sorted(self.by_type.items())),
            "seq_gaps": self.seq_gaps,
            "missing_frames": self.missing_frames,
            "seq_backwards": self.seq_backwards,
            "reboots": self.reboots,
        }


class _BurstLog:
    """Log the first error of a burst at WARNING, then a summary when the next burst starts."""

    def __init__(self, quiet_s: float = 10.0) -> None:
        self.quiet_s = quiet_s
        self._last = -1e18
        self._suppressed = 0

    def error(self, exc: FrameError, name: str) -> None:
        now = time.monotonic()
        if now - self._last >= self.quiet_s:
            more = f" ({self._suppressed} more errors since the last report)" if self._suppressed else ""
            log.warning("%s: dropped frame: %s%s", name, exc, more)
            self._suppressed = 0
            self._last = now
        else:
            self._suppressed += 1


class FrameDecoder:
    """Push-based, resynchronising frame decoder with per-kind error counters and sequence tracking."""

    def __init__(
        self,
        *,
        policy: ErrorPolicy = ErrorPolicy.SKIP,
        version: int = PROTOCOL_VERSION,
        max_block: int = MAX_ENCODED,
        name: str = "bridge",
    ) -> None:
        self.policy = policy
        self.version = version
        self.max_block = max_block
        self.name = name
        self.counters = ReaderCounters()
        self._partial = bytearray()
        self._discarding = False  # inside an oversize run: drop until the next 0x00
        self._blocks: deque[bytes] = deque()
        self._boot_id: int | None = None
        self._last_seq = 0
        self._burst = _BurstLog()

    @property
    def has_blocks(self) -> bool:
        """Complete blocks are queued and not yet classified (e.g. after a raise under RAISE)."""
        return bool(self._blocks)

    @property
    def pending(self) -> int:
        """Bytes received but not yet classified (a partial frame, or queued blocks)."""
        return len(self._partial) + sum(len(b) for b in self._blocks)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes; complete blocks are queued for :meth:`frames`."""
        c = self.counters
        c.bytes_in += len(data)
        parts = bytes(data).split(b"\x00")
        c.delimiters += len(parts) - 1
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if self._discarding:
                c.bytes_dropped += len(part)
                if not last:
                    self._discarding = False
                continue
            self._partial += part
            if last:
                if len(self._partial) > self.max_block:
                    self._oversize()
            else:
                block = bytes(self._partial)
                self._partial.clear()
                if len(block) > self.max_block:
                    self._partial += block
                    self._oversize()
                    self._discarding = False
                elif block:
                    self._blocks.append(block)

    def _oversize(self) -> None:
        c = self.counters
        c.blocks += 1
        c.bytes_dropped += len(self._partial)
        self._partial.clear()
        self._discarding = True
        self._record(
            FrameError(
                FrameErrorKind.OVERSIZE,
                f"more than {self.max_block} bytes without a 0x00 delimiter",
                fix="check the baud rate and that the device speaks this protocol",
            ),
            raise_now=False,
        )

    def _record(self, exc: FrameError, *, raise_now: bool = True) -> None:
        self.counters.errors[exc.kind] += 1
        self._burst.error(exc, self.name)
        if raise_now and self.policy is ErrorPolicy.RAISE:
            raise exc

    def frames(self) -> Iterator[Frame]:
        """Yield accepted frames from the queued blocks (raises FrameError under ErrorPolicy.RAISE)."""
        c = self.counters
        while self._blocks:
            block = self._blocks.popleft()
            c.blocks += 1
            try:
                frame = decode_block(block, version=self.version)
                self._check_sequence(frame)
            except FrameError as exc:
                c.bytes_dropped += len(block)
                self._record(exc)
                continue
            c.bytes_ok += len(block)
            c.frames_ok += 1
            c.by_type[frame.msg_type.name] += 1
            yield frame

    def decode(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Feed ``data`` and return the frames it completed (use :meth:`frames` with ErrorPolicy.RAISE)."""
        self.feed(data)
        return list(self.frames())

    def _check_sequence(self, frame: Frame) -> None:
        c = self.counters
        if frame.boot_id != self._boot_id:
            if self._boot_id is not None:
                c.reboots += 1
            self._boot_id = frame.boot_id
            self._last_seq = frame.seq
            return
        step = (frame.seq - self._last_seq) % SEQ_MOD
        if step == 0:
            raise FrameError(
                FrameErrorKind.DUPLICATE,
                f"duplicate frame seq {frame.seq} of boot 0x{frame.boot_id:08x}",
                fix="dropped; a link that retransmits must not deliver twice",
            )
        if step >= SEQ_HALF:
            c.seq_backwards += 1
        elif step > 1:
            c.seq_gaps += 1
            c.missing_frames += step - 1
        self._last_seq = frame.seq


class ByteStream(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class BridgeReader:
    """Iterate the frames of any stream with ``read(n)``; stops when ``read`` returns no bytes.

    A pyserial port is read in bulk: ``read(in_waiting)`` when bytes are waiting, else ``read(1)``
    (which blocks up to the port's timeout) followed by whatever else has arrived.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        policy: ErrorPolicy = ErrorPolicy.SKIP,
        version: int = PROTOCOL_VERSION,
        chunk_size: int = 65536,
        name: str = "bridge",
    ) -> None:
        self.stream = stream
        self.chunk_size = chunk_size
        self.decoder = FrameDecoder(policy=policy, version=version, name=name)
        self._frames: Iterator[Frame] = iter(())

    @property
    def counters(self) -> ReaderCounters:
        return self.decoder.counters

    def _read_bulk(self) -> bytes:
        waiting = getattr(self.stream, "in_waiting", None)
        if isinstance(waiting, int):
            data = self.stream.read(waiting) if waiting > 0 else self.stream.read(1)
            more = getattr(self.stream, "in_waiting", 0)
            if data and isinstance(more, int) and more > 0:
                data += self.stream.read(more)
            return bytes(data)
        return bytes(self.stream.read(self.chunk_size))

    def read(self) -> Frame | None:
        """The next accepted frame, or None when the stream returned no bytes (EOF / timeout)."""
        while True:
            frame = next(self._frames, None)
            if frame is not None:
                return frame
            if self.decoder.has_blocks:  # left over after a FrameError under ErrorPolicy.RAISE
                self._frames = self.decoder.frames()
                continue
            data = self._read_bulk()
            if not data:
                return None
            self.decoder.feed(data)
            self._frames = self.decoder.frames()

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        frame = self.read()
        if frame is None:
            raise StopIteration
        return frame
