"""The store writer's queue: write requests in order, each with a sequence number.

The writer copies a batch from the front and, once it is committed, removes exactly those items by
sequence number: an item put at the front meanwhile (a prune, which makes room on a full disk) is
never removed in their place, and no item is written twice. Not thread-safe by itself: the store
holds its lock around every call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WriteItem:
    """One write request: ``kind`` (samples, columns, steps, counters, prune) and its rows; ``columns``
    is one channel's ``(name, t, value)`` arrays (a bulk load)."""

    seq: int
    kind: str
    payload: Any

    @property
    def samples(self) -> int:
        if self.kind == "samples":
            return len(self.payload)
        return len(self.payload[1]) if self.kind == "columns" else 0


class WriteQueue:
    def __init__(self) -> None:
        self._items: deque[WriteItem] = deque()
        self.last_seq = 0  # the sequence number of the newest item ever queued
        self.samples = 0  # samples queued, not committed

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[WriteItem]:
        return iter(self._items)

    def add(self, kind: str, payload: Any, *, front: bool = False) -> WriteItem:
        self.last_seq += 1
        item = WriteItem(self.last_seq, kind, payload)
        if front:
            self._items.appendleft(item)
        else:
            self._items.append(item)
        self.samples += item.samples
        return item

    def batch(self, max_samples: int) -> list[WriteItem]:
        """Items from the front (left in the queue until committed), up to ``max_samples`` samples
        (at least one item)."""
        out: list[WriteItem] = []
        n = 0
        for item in self._items:
            if out and n + item.samples > max_samples:
                break
            out.append(item)
            n += item.samples
        return out

    def committed(self, items: list[WriteItem]) -> None:
        """Remove exactly these items (by sequence number), wherever they are now."""
        done = {item.seq for item in items}
        self._items = deque(item for item in self._items if item.seq not in done)
        self.samples -= sum(item.samples for item in items)

    def pending_upto(self, seq: int) -> int:
        """How many items queued at or before ``seq`` are not committed yet."""
        return sum(1 for item in self._items if item.seq <= seq)
