"""Fuzzing of the raw serial capture reader (agent/sensors/capture.py), the one parser of files that
`agent replay` and bug reports feed in: any bytes after the magic, and any index.json, give records
or a CaptureError, never another exception; the bytes of a record file are fully accounted for."""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import CaptureError
from agent.sensors.capture import MAGIC, RECORD, ReadStats, iter_records, read_index

pytestmark = pytest.mark.faults

CASES_RECORDS = 500
CASES_INDEX = 500


def _records(chunks: list[tuple[float, bytes]]) -> bytes:
    return b"".join(RECORD.pack(t, len(d)) + d for t, d in chunks)


@settings(max_examples=CASES_RECORDS, deadline=None)
@given(
    good=st.lists(st.tuples(st.floats(allow_nan=False), st.binary(max_size=64)), max_size=8),
    junk=st.binary(max_size=64),
    cut=st.integers(min_value=0, max_value=400),
)
def test_record_files_of_any_bytes_give_records_or_a_capture_error(
    good: list[tuple[float, bytes]], junk: bytes, cut: int
) -> None:
    body = _records(good) + junk
    body = body[: len(body) - min(cut, len(body) // 2)]  # power loss cuts the tail anywhere
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.cap"
        path.write_bytes(MAGIC + body)
        stats = ReadStats()
        try:
            out = list(iter_records(path, stats))
        except CaptureError as exc:
            assert exc.fix
            return
    assert all(isinstance(t, float) and isinstance(d, bytes) for t, d in out)
    # accounted: every byte is a record header, record data, or the counted truncated tail
    assert len(out) * RECORD.size + stats.bytes + stats.truncated_tail == len(body)
    assert stats.records == len(out)
    # the clean prefix comes back exactly, in order, whatever follows it
    n_intact = 0
    for t, d in good:
        if n_intact < len(out) and out[n_intact] == (t, d):
            n_intact += 1
        else:
            break
    assert out[:n_intact] == good[:n_intact]


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
port_entries = st.dictionaries(
    st.sampled_from(["file", "format", "device", "baudrate", "x"]),
    st.one_of(json_values, st.sampled_from(["ubx", "nmea", "bridge", "gnss.cap", "../etc/passwd", "a/b"])),
    max_size=5,
)


@settings(max_examples=CASES_INDEX, deadline=None)
@given(
    version=st.one_of(st.just(1), json_values),
    ports=st.dictionaries(st.text(max_size=10), st.one_of(port_entries, json_values), max_size=3),
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)
def test_any_index_json_gives_an_index_or_a_capture_error(
    version: Any, ports: dict[str, Any], extra: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "index.json").write_text(
            json.dumps({**extra, "format_version": version, "ports": ports})
        )
        try:
            index = read_index(Path(tmp))
        except CaptureError as exc:
            assert exc.fix
            return
    for entry in index.ports.values():
        assert Path(entry.file).name == entry.file and entry.format in ("ubx", "nmea", "bridge")


@pytest.mark.parametrize("ports", [[1], "gnss"])
def test_ports_that_is_not_an_object_is_a_capture_error(tmp_path: Path, ports: Any) -> None:
    (tmp_path / "index.json").write_text(json.dumps({"format_version": 1, "ports": ports}))
    with pytest.raises(CaptureError):
        read_index(tmp_path)


def test_truncated_header_and_huge_length_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "p.cap"
    path.write_bytes(MAGIC + _records([(1.0, b"ab")]) + struct.pack("<d", 2.0))  # header cut after t
    stats = ReadStats()
    assert list(iter_records(path, stats)) == [(1.0, b"ab")] and stats.truncated_tail == 8
    path.write_bytes(MAGIC + RECORD.pack(1.0, 2**31))
    with pytest.raises(CaptureError, match="record of"):
        list(iter_records(path))
    path.write_bytes(b"NOTACAP!")
    with pytest.raises(CaptureError, match="does not start with"):
        list(iter_records(path))
