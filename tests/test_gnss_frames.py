"""GNSS framer on the real receiver captures in ../shared/data/gnss-receiver-logs and on garbage."""

from __future__ import annotations

import gzip
import io
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyubx2 import UBX_MSGIDS, UBXReader

from agent.sensors.gnss_frames import GnssFramer, iter_frames, nmea_checksum_ok, ubx_checksum

LOGS = "gnss-receiver-logs"


def _read(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def _framer_counts(data: bytes, chunk: int = 65536) -> tuple[GnssFramer, int]:
    framer = GnssFramer(frozenset())  # count by header only
    n = 0
    for i in range(0, len(data), chunk):
        n += len(framer.feed(data[i : i + chunk]))
    n += len(framer.finish())
    return framer, n


def _pyubx2_counts(path: Path) -> Counter[str]:
    """Reference: pyubx2's own stream reader (raw framing only) on a file it can read to the end."""
    counts: Counter[str] = Counter()
    with open(path, "rb") as f:
        for raw, _ in UBXReader(f, parsing=0, quitonerror=0):
            if raw[:2] == b"\xb5\x62":
                counts[UBX_MSGIDS.get(raw[2:4], "?")] += 1
            else:
                counts[raw[1:].split(b",", 1)[0].decode()] += 1
    return counts


@pytest.mark.parametrize(
    "rel",
    [
        "gpsd_regress/ublox-zed-f9p_hpg1.11.log",
        "gpsd_regress/ublox-zed-f9p-nmea.log",
        "gpsd_regress/ublox-zed-f9p-hp.log",
        "gpsd_regress/ublox-neo-m8t.log",
        "pyubx2/pygpsdata-MIXED.log",
        "pyubx2/pygpsdata-NAV-ZED-X20P.log",
        "rtklib_geonet_rinex/ubx_20080526.ubx",
    ],
)
def test_gnss_counts_match_pyubx2_reader_on_real_logs(shared_data: Path, rel: str) -> None:
    path = shared_data / LOGS / rel
    framer, n = _framer_counts(path.read_bytes(), chunk=997)  # odd chunking on purpose
    ref = _pyubx2_counts(path)
    assert dict(framer.counters.messages) == dict(ref)
    assert n == sum(ref.values()) == framer.counters.frames
    c = framer.counters
    assert c.frame_bytes + c.skipped_bytes == c.bytes == path.stat().st_size


def test_gnss_known_counts_hpg_mixed_log(shared_data: Path) -> None:
    """ZED-F9P hpg1.11 (SOURCES.md): 655 one-second epochs of mixed UBX + NMEA after a '#' header."""
    framer, _ = _framer_counts((shared_data / LOGS / "gpsd_regress/ublox-zed-f9p_hpg1.11.log").read_bytes())
    m = framer.counters.messages
    assert m["GNGGA"] == m["GNRMC"] == m["NAV-CLOCK"] == 655
    assert m["RXM-RAWX"] == m["RXM-MEASX"] == 654
    # only the '#' comment header (and one torn line) is skipped, in one run at the start
    assert framer.counters.skipped_bytes < 1000


def test_gnss_gz_rover_capture_parses(shared_data: Path) -> None:
    data = _read(shared_data / LOGS / "jdesbonnet_static_m8p/rover-20181004-1237.ubx.gz")
    framer, _ = _framer_counts(data)
    m = framer.counters.messages
    assert m["NAV-SOL"] == m["RXM-RAWX"] == 1205
    assert m["GNGGA"] == 1204
    assert framer.counters.errors <= 1


def test_gnss_damaged_base_capture_resyncs_where_pyubx2_stops(shared_data: Path) -> None:
    """The M8P base log has torn frames; pyubx2's stream reader raises on it, the framer resyncs."""
    data = _read(shared_data / LOGS / "jdesbonnet_static_m8p/base-20181004-1236.ubx.gz")
    with pytest.raises(UnicodeDecodeError):
        for _ in UBXReader(io.BytesIO(data), quitonerror=0):
            pass
    framer, n = _framer_counts(data)
    c = framer.counters
    assert n > 6000 and c.messages["NAV-SOL"] > 600
    assert c.resyncs > 100 and c.errors > 100
    assert c.frame_bytes + c.skipped_bytes == c.bytes == len(data)


def test_gnss_chunking_does_not_change_frames(shared_data: Path) -> None:
    data = (shared_data / LOGS / "pyubx2/pygpsdata-MIXED.log").read_bytes()
    one = [f.raw for f in GnssFramer().feed(data)]
    rng = np.random.default_rng(3)
    framer = GnssFramer()
    pos, many = 0, []
    while pos < len(data):
        step = int(rng.integers(1, 200))
        many += [f.raw for f in framer.feed(data[pos : pos + step])]
        pos += step
    many += [f.raw for f in framer.finish()]
    assert many == one and len(one) == 308


def test_gnss_checksum_helpers() -> None:
    assert nmea_checksum_ok(b"$GNGLL,4552.65550,S,17030.00756,E,011903.00,A,A*64")
    assert not nmea_checksum_ok(b"$GNGLL,4552.65550,S,17030.00756,E,011903.00,A,A*65")
    assert not nmea_checksum_ok(b"$GNGLL,no star")
    assert ubx_checksum(b"\x01\x07\x00\x00") == bytes((0x08, 0x19))


@pytest.mark.faults
def test_gnss_fuzz_corrupted_frames_never_raise_and_counters_add_up(shared_data: Path) -> None:
    """10^4 corrupted copies of real frames (bit flips, truncation, garbage between) in one stream."""
    _fuzz(shared_data, 10_000, seed=7)


@pytest.mark.faults
@pytest.mark.slow
def test_gnss_fuzz_1e5_corrupted_frames(shared_data: Path) -> None:
    _fuzz(shared_data, 100_000, seed=8)


def _fuzz(shared_data: Path, n_frames: int, seed: int) -> None:
    data = (shared_data / LOGS / "gpsd_regress/ublox-zed-f9p-nmea.log").read_bytes()
    data += (shared_data / LOGS / "pyubx2/pygpsdata-MIXED.log").read_bytes()
    frames = [f.raw for f in GnssFramer().feed(data)]
    rng = np.random.default_rng(seed)
    parts: list[bytes] = []
    intact = 0
    for _ in range(n_frames):
        raw = bytearray(frames[int(rng.integers(len(frames)))])
        action = int(rng.integers(4))
        if action == 0:
            raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        elif action == 1:
            raw = raw[: int(rng.integers(1, len(raw)))]
        elif action == 2:
            raw = bytearray(rng.integers(0, 256, int(rng.integers(1, 40)), dtype=np.uint8).tobytes()) + raw
        else:
            intact += 1
        parts.append(bytes(raw))
    stream = b"".join(parts)
    framer = GnssFramer()  # parse everything: pyubx2 / pynmeagps see every surviving frame
    out = framer.feed(stream) + framer.finish()
    c = framer.counters
    assert c.frame_bytes + c.skipped_bytes == c.bytes == len(stream)
    assert len(out) >= intact  # every intact frame is found (a flip may also leave a valid frame)
    assert c.errors > 0 and c.resyncs > 0


@pytest.mark.faults
def test_gnss_random_bytes_are_counted_not_raised() -> None:
    rng = np.random.default_rng(11)
    stream = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    framer = GnssFramer()
    frames = list(iter_frames(io.BytesIO(stream), framer, block=4096))
    c = framer.counters
    assert c.bytes == len(stream)
    assert c.frame_bytes + c.skipped_bytes == c.bytes
    parse_errors = c.errors_by_kind["ubx_parse_error"] + c.errors_by_kind["nmea_parse_error"]
    assert len(frames) == c.frames - parse_errors


_SAMPLE_FRAMES = (
    b"$GNGLL,4552.65550,S,17030.00756,E,011903.00,A,A*64\r\n",
    bytes.fromhex("b5620107") + (92).to_bytes(2, "little") + bytes(92),  # NAV-PVT body, checksum added below
)


def _with_checksum(frame: bytes) -> bytes:
    return frame + ubx_checksum(frame[2:]) if frame[:2] == b"\xb5\x62" else frame


@pytest.mark.faults
@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(
        st.one_of(st.binary(max_size=40), st.sampled_from([_with_checksum(f) for f in _SAMPLE_FRAMES])),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
)
def test_gnss_property_any_bytes_any_chunking(pieces: list[bytes], cuts: list[int]) -> None:
    """For any byte string and any chunking: same frames, no exception, every byte accounted for."""
    stream = b"".join(pieces)
    ref = GnssFramer()
    whole = [f.raw for f in ref.feed(stream) + ref.finish()]
    framer = GnssFramer()
    got: list[bytes] = []
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for a, b in itertools.pairwise(bounds):
        got += [f.raw for f in framer.feed(stream[a:b])]
    got += [f.raw for f in framer.finish()]
    assert got == whole
    c = framer.counters
    assert c.frame_bytes + c.skipped_bytes == c.bytes == len(stream)
    assert c.as_dict() == ref.counters.as_dict()
