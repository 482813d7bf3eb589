"""The columnar NMEA helpers on their own: grouping equal rows by hash (with its collision path)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.sensors import nmea_columnar

Grouping = tuple[np.ndarray, np.ndarray]


def _reference(rows: np.ndarray) -> Grouping:
    keys = rows.view(f"V{rows.shape[1]}").ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _same_partition(a: Grouping, b: Grouping, rows: np.ndarray) -> None:
    """Both groupings put the same rows together and name a member of the group as its first row."""
    (first_a, inv_a), (first_b, inv_b) = a, b
    assert len(first_a) == len(first_b)
    np.testing.assert_array_equal(rows[first_a[inv_a]], rows)
    np.testing.assert_array_equal(rows[first_b[inv_b]], rows)
    pairs = set(zip(inv_a.tolist(), inv_b.tolist(), strict=True))
    assert len(pairs) == len(first_a)  # a bijection between the two labellings


@pytest.mark.parametrize("length", [1, 7, 8, 9, 70, 600])
def test_rows_grouped_by_hash_equal_np_unique(length: int) -> None:
    rng = np.random.default_rng(length)
    pool = rng.integers(0, 4, (12, length), dtype=np.uint8)
    rows = pool[rng.integers(0, len(pool), 500)]
    got = nmea_columnar._alike(rows)
    _same_partition(got, _reference(rows), rows)


def test_a_hash_collision_falls_back_to_comparing_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    # every row hashes to 0: the grouping must see the collision and still tell the rows apart
    monkeypatch.setattr(nmea_columnar, "_MIX", np.zeros(64, dtype=np.uint64))
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 3, (200, 11), dtype=np.uint8)
    got = nmea_columnar._alike(rows)
    assert len(got[0]) > 1
    _same_partition(got, _reference(rows), rows)
