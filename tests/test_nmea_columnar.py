"""The columnar NMEA helpers on their own: grouping equal rows by hash (with its collision path), the
line checks and headers against the live framer."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import Unsupported
from agent.sensors import nmea_columnar
from agent.sensors.gnss_frames import GnssFramer, nmea_identity
from agent.sensors.gnss_frames_columnar import HEAD, frame_stream, nmea_headers

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


def _line(body: str) -> bytes:
    xor = 0
    for c in body.encode():
        xor ^= c
    return f"${body}*{xor:02X}\r\n".encode()


@pytest.mark.parametrize(
    "body",
    [
        "GNGGA,1,2",  # the common form: the comma right after the header
        "GPXYZ",  # no comma at all
        "G*P,1",  # a '*' before the first comma
        "ABCDEFGHIJKL,1",  # a header longer than the window, its comma after it
        "ABCDEFGHIJKL",  # ... and none
        "A,",  # shorter than the window
    ],
)
def test_line_checks_decide_as_the_live_framer(body: str) -> None:
    """frame_stream frames what the live framer frames, and refuses (Unsupported) what it would not."""
    stream = _line("GNRMC,1,A") + _line(body) + _line("GNGGA,2,3")
    framer = GnssFramer(frozenset())
    live = [*framer.feed(stream), *framer.finish()]
    if [f.raw for f in live] == [_line("GNRMC,1,A"), _line(body), _line("GNGGA,2,3")]:
        cols = frame_stream(stream)
        assert np.array_equal(cols.end, np.cumsum([len(f.raw) for f in live]))
        if len(nmea_identity(_line(body))) < HEAD:
            ids, names = nmea_headers(cols)
            assert [names[i] for i in ids] == [nmea_identity(f.raw) for f in live]
        else:  # the columnar replay refuses the capture and replays it record by record
            with pytest.raises(Unsupported):
                nmea_headers(cols)
    else:
        with pytest.raises(Unsupported):
            frame_stream(stream)
