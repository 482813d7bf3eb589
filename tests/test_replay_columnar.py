"""The columnar replay against the record-by-record replay (the reference): same store, same steps,
same counters, on SYNTHETIC captures (simulated 10 Hz receiver, simulated bridge with a 100 Hz
geophone, rain, wire, reboots, outages, garbage) and on the real receiver logs of ../shared/data;
and where it cannot reproduce the reference, it says so and the reference runs.
"""

from __future__ import annotations

import gzip
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from pynmeagps import NMEAReader
from pyubx2 import UBXReader
from typer.testing import CliRunner

from agent import replay_cli
from agent.errors import Unsupported
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.sensors import replay_columnar
from agent.sensors.bridge_frames_columnar import cobs_decode_all
from agent.sensors.capture import CaptureWriter
from agent.sensors.gnss import GnssConfig, Reference, to_enu_mm
from agent.sensors.gnss_columnar import decode_gnss
from agent.sensors.gnss_epochs import EpochAssembler, TimeContext
from agent.sensors.gnss_frames import GnssFramer
from agent.sensors.gnss_frames_columnar import frame_stream
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate
from agent.sensors.nmea_columnar import gga_times, rmc_fields
from agent.sensors.replay import ReplayResult, replay
from agent.sensors.settings import SensorsConfig
from firmware_bridge.cobs import cobs_decode, cobs_encode
from firmware_bridge.device_model import generate_frames
from firmware_bridge.errors import FrameError
from firmware_bridge.scenario import scenario_from_dict

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
REF = Reference(46.05, 14.50, 400.0)
# band-pass output: equal to rounding, which depends on where the filter's blocks start (1e-12 of the
# channel's peak, 1e-9 relative)
FILTERED = ("seismic.pgv_mm_s",)
SENSORS: dict[str, Any] = {
    "gnss": {"reference": {"lat": REF.lat, "lon": REF.lon, "h_m": REF.h_m}, "epoch_rate_hz": 10.0},
    "seismic": {"pgv_window_s": 1.0},
}
SAMPLES = "SELECT c.name, s.t, s.value FROM samples s JOIN channels c ON c.id = s.channel_id"
STEPS = "SELECT step_s, col, start, value, count, completeness FROM steps ORDER BY step_s, col, start"
COUNTERS = "SELECT scope, name, value FROM counters ORDER BY scope, name"


def _capture(directory: Path, seconds: float, bridge: dict[str, Any], gnss_skip: tuple[float, float]) -> None:
    scenario = scenario_from_dict({"duration_s": seconds, "start_utc": START, **bridge})
    traj = Trajectory(t_s=(0.0, seconds), e_mm=(0.0, 5.0), n_mm=(0.0, 1.0), u_mm=(0.0, -1.0))
    sim = SimConfig(reference=REF, trajectory=traj, start_utc=START, rate_hz=10.0, duration_s=seconds)
    with CaptureWriter(directory) as writer:
        port = writer.add_port("bridge0", "bridge")
        for t_s, data in generate_frames(scenario):
            port(START + t_s, data)
        gnss = writer.add_port("gnss0", "ubx")
        for ep in simulate(sim):
            if not gnss_skip[0] <= ep.t - START < gnss_skip[1]:  # a receiver outage
                gnss(ep.t + 0.02, ep.data)


def _replay(capture: Path, store_path: Path, sensors: dict[str, Any], *, columnar: bool) -> ReplayResult:
    with Store(StoreConfig.model_validate({"path": store_path})) as store:
        return replay(capture, SensorsConfig.model_validate(sensors), store, columnar=columnar)


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _channels(path: Path) -> dict[str, np.ndarray]:
    """Channel -> (t, value) rows in the order a read gives them (time, then insertion)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, t, v in _rows(path, SAMPLES + " ORDER BY c.name, s.t, s.rowid"):
        out.setdefault(name, []).append((t, v))
    return {k: np.array(v) for k, v in out.items()}


def assert_same_replay(a: ReplayResult, b: ReplayResult, store_a: Path, store_b: Path) -> None:
    """Same samples, steps, counters table and replay counters (FILTERED channels to rounding)."""
    ca, cb = _channels(store_a), _channels(store_b)
    assert sorted(ca) == sorted(cb)
    for ch in ca:
        assert ca[ch].shape == cb[ch].shape, ch
        assert np.array_equal(ca[ch][:, 0], cb[ch][:, 0]), ch
        if ch in FILTERED:
            peak = float(np.abs(cb[ch][:, 1]).max())
            np.testing.assert_allclose(ca[ch][:, 1], cb[ch][:, 1], rtol=1e-9, atol=1e-12 * peak, err_msg=ch)
        else:
            assert np.array_equal(ca[ch][:, 1], cb[ch][:, 1]), ch
    sa, sb = _rows(store_a, STEPS), _rows(store_b, STEPS)
    assert [r[:3] + r[4:] for r in sa] == [r[:3] + r[4:] for r in sb]
    for ra, rb in zip(sa, sb, strict=True):
        assert (ra[3] is None) == (rb[3] is None), ra
        if ra[3] is not None:
            assert math.isclose(ra[3], rb[3], rel_tol=1e-9, abs_tol=1e-15), (ra, rb)
    assert _rows(store_a, COUNTERS) == _rows(store_b, COUNTERS)
    types = "SELECT typeof(channel_id), typeof(t), typeof(value), count(*) FROM samples GROUP BY 1, 2, 3"
    assert _rows(store_a, types) == _rows(store_b, types)
    assert (a.records, a.bytes, a.capture_s, a.samples, a.steps) == (
        b.records,
        b.bytes,
        b.capture_s,
        b.samples,
        b.steps,
    )
    assert a.drops() == b.drops()
    for group in ("pipeline", "decoders", "ports", "device_clock", "capture"):
        assert a.counters[group] == b.counters[group], group
    store_a_stats = {k: v for k, v in a.counters["store"].items() if k != "batches"}
    assert store_a_stats == {k: v for k, v in b.counters["store"].items() if k != "batches"}


@pytest.mark.parametrize(
    ("bridge", "gnss_skip"),
    [
        (
            {
                "seismic_events": [{"t_s": 150, "duration_s": 10, "amplitude_counts": 2e6}],
                "rain": [{"t_s": 0, "mm_per_h": 8.0}, {"t_s": 200, "mm_per_h": 30.0}],
                "wire": [{"t_s": 225, "state": 1}],
            },
            (0.0, 0.0),
        ),
        (
            {
                "seismic_events": [{"t_s": 60, "duration_s": 5, "amplitude_counts": 3e6}],
                "rain": [{"t_s": 10, "mm_per_h": 12.0}],
                "reboots": [100.0],
                "outages": [{"t_s": 180, "duration_s": 20}],
                "garbage": [{"t_s": 30, "nbytes": 40}],
            },
            (120.0, 150.0),
        ),
    ],
    ids=["storm", "reboot-outage-garbage"],
)
def test_columnar_replay_equals_the_record_replay(
    tmp_path: Path, bridge: dict[str, Any], gnss_skip: tuple[float, float]
) -> None:
    _capture(tmp_path / "cap", 300.0, bridge, gnss_skip)
    fast = _replay(tmp_path / "cap", tmp_path / "a.sqlite", SENSORS, columnar=True)
    ref = _replay(tmp_path / "cap", tmp_path / "b.sqlite", SENSORS, columnar=False)
    assert (fast.mode, fast.columnar_refused, ref.mode) == ("columnar", None, "records")
    assert fast.samples["gnss.e_mm"] > 2000 and fast.samples["seismic.pgv_mm_s"] > 200
    assert_same_replay(fast, ref, tmp_path / "a.sqlite", tmp_path / "b.sqlite")


def test_what_the_columnar_replay_cannot_reproduce_goes_read_by_read(tmp_path: Path) -> None:
    _capture(tmp_path / "cap", 60.0, {"rain": [{"t_s": 0, "mm_per_h": 5.0}]}, (0.0, 0.0))
    wrong_clock = {**SENSORS, "gnss": {**SENSORS["gnss"], "discipline_clock": True}}
    gnss_file = tmp_path / "cap" / "gnss0.cap"
    data = bytearray(gnss_file.read_bytes())
    data[20 + 12 + 30] ^= 0xFF  # one byte inside the first NAV-PVT: its checksum fails
    gnss_file.write_bytes(bytes(data))
    fast = _replay(tmp_path / "cap", tmp_path / "a.sqlite", wrong_clock, columnar=True)
    ref = _replay(tmp_path / "cap", tmp_path / "b.sqlite", wrong_clock, columnar=False)
    assert fast.mode == "records" and fast.columnar_refused is not None
    assert "checksum" in fast.columnar_refused or "outside frames" in fast.columnar_refused
    assert_same_replay(fast, ref, tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    # a store that already holds samples: the columnar replay writes new stores only
    again = _replay(tmp_path / "cap", tmp_path / "a.sqlite", wrong_clock, columnar=True)
    assert again.mode == "records" and "not empty" in str(again.columnar_refused)


def test_a_capture_longer_than_the_retention_is_replayed_read_by_read(tmp_path: Path) -> None:
    _capture(tmp_path / "cap", 120.0, {}, (0.0, 0.0))
    with Store(StoreConfig.model_validate({"path": tmp_path / "a.sqlite", "retention_days": 0.04})) as store:
        result = replay(tmp_path / "cap", SensorsConfig.model_validate(SENSORS), store)
    assert result.mode == "records" and "retention" in str(result.columnar_refused)


def test_a_capture_too_large_to_hold_is_replayed_read_by_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capture(tmp_path / "cap", 30.0, {}, (0.0, 0.0))
    monkeypatch.setattr(replay_columnar, "MAX_CAPTURE_BYTES", 10_000)
    fast = _replay(tmp_path / "cap", tmp_path / "a.sqlite", SENSORS, columnar=True)
    assert fast.mode == "records" and "held in memory" in str(fast.columnar_refused)


def test_a_capture_stamped_by_a_wrong_clock_is_replayed_read_by_read(tmp_path: Path) -> None:
    with CaptureWriter(tmp_path / "cap") as writer:
        gnss = writer.add_port("gnss0", "ubx")
        traj = Trajectory(t_s=(0.0, 30.0), e_mm=(0.0, 1.0), n_mm=(0.0, 1.0), u_mm=(0.0, 0.0))
        sim = SimConfig(reference=REF, trajectory=traj, start_utc=START, rate_hz=1.0, duration_s=30.0)
        for ep in simulate(sim):
            gnss(ep.t + 3600.0, ep.data)  # the gateway's clock an hour ahead of GNSS time
    sensors = {**SENSORS, "gnss": {**SENSORS["gnss"], "discipline_clock": True, "epoch_rate_hz": 1.0}}
    fast = _replay(tmp_path / "cap", tmp_path / "a.sqlite", sensors, columnar=True)
    assert fast.mode == "records" and "clock" in str(fast.columnar_refused)


# ---- real receiver logs: the array decoders against pyubx2 / pynmeagps and the live framer ----------
def _real_logs(shared_data: Path) -> list[Path]:
    root = shared_data / "gnss-receiver-logs"
    skip = {".md", ".gpsd", ".05n", ".05o"}
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix not in skip and "COPYING" not in p.name
    )


def _frames(path: Path) -> list[Any]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    framer = GnssFramer(frozenset())
    return [*framer.feed(data), *framer.finish()]


def test_framing_equals_the_framer_on_every_real_log(shared_data: Path) -> None:
    """The frames of each real log, laid end to end (what a capture import writes), framed at once."""
    seen = 0
    for path in _real_logs(shared_data):
        frames = _frames(path)
        if not frames:
            continue
        stream = b"".join(f.raw for f in frames)
        cols = frame_stream(stream)
        assert len(cols) == len(frames), path.name
        ends = np.cumsum([len(f.raw) for f in frames])
        assert np.array_equal(cols.end, ends), path.name
        assert [int(k) for k in cols.kind] == [0 if f.protocol == "UBX" else 1 for f in frames], path.name
        seen += len(frames)
    assert seen > 10_000


def test_gga_and_rmc_times_equal_pynmeagps_on_every_real_line(shared_data: Path) -> None:
    lines: dict[str, list[bytes]] = {"GGA": [], "RMC": []}
    for path in _real_logs(shared_data):
        for f in _frames(path):
            kind = f.identity[2:]
            if f.protocol == "NMEA" and kind in lines and not f.identity.startswith("P"):
                lines[kind].append(f.raw)
    assert len(lines["GGA"]) > 1000 and len(lines["RMC"]) > 1000
    for kind, raws in lines.items():
        text = b"".join(raws)
        ends = np.cumsum([len(r) for r in raws])
        starts = ends - np.array([len(r) for r in raws])
        ref = [NMEAReader.parse(r) for r in raws]
        if kind == "GGA":
            got = gga_times(text, starts, ends)
        else:
            days, got, ok = rmc_fields(text, starts, ends)
            assert [m.status == "A" for m in ref] == ok.tolist()
            assert [m.date.toordinal() - 719163 for m in ref] == days.tolist()
        want = [
            ((m.time.hour * 60 + m.time.minute) * 60 + m.time.second) * 10**6 + m.time.microsecond
            for m in ref
        ]
        assert got.tolist() == want, kind


def test_cobs_decoding_all_blocks_at_once_equals_the_block_decoder() -> None:
    """Random frames (long zero-free runs for 0xFF codes, zeros), corrupted blocks, empty blocks and an
    unterminated tail: every block decodes as firmware_bridge.cobs.cobs_decode decodes it alone."""
    rng = np.random.default_rng(5)
    blocks: list[bytes] = []
    for k in range(300):
        raw = rng.integers(0, 256, int(rng.integers(0, 700)), dtype=np.uint8)
        if k % 3 == 0:
            raw[raw == 0] = 7  # zero-free: 0xFF codes
        enc = bytearray(cobs_encode(raw.tobytes()))
        if k % 7 == 0 and len(enc) > 2:
            enc[int(rng.integers(0, len(enc)))] = int(rng.integers(1, 256))  # a changed byte
        if k % 11 == 0 and len(enc) > 2:
            enc = enc[:-1]  # the last code points past the end: malformed
        blocks.append(bytes(enc))
    stream = b"\x00\x00".join(blocks[:150]) + b"\x00" + b"\x00".join(blocks[150:]) + b"\x00" + b"\x07\x01"
    b = np.frombuffer(stream, dtype=np.uint8)
    zeros = np.flatnonzero(b == 0)
    starts = np.concatenate(([0], zeros + 1))[: len(zeros)]
    nonempty = zeros > starts
    bs, be = starts[nonempty], zeros[nonempty]
    dec, dstart, ok = cobs_decode_all(b, bs, be)
    dend = np.append(dstart[1:], len(dec))
    assert len(bs) == sum(1 for blk in blocks if blk)
    for i, (lo, hi) in enumerate(zip(bs.tolist(), be.tolist(), strict=True)):
        try:
            want: bytes | None = cobs_decode(stream[lo:hi])
        except FrameError:
            want = None
        assert bool(ok[i]) == (want is not None), i
        if want is not None:
            assert dec[dstart[i] : dend[i]].tobytes() == want, i
    assert not ok.all()  # the corruption made some blocks malformed


def test_a_line_out_of_the_plain_form_is_refused_even_among_many_alike() -> None:
    good = b"$GNGGA,123519.00,4807.03812,N,01131.00012,E,4,12,0.9,545.4,M,46.9,M,,*47\r\n"
    bad = good.replace(b"4807.03812", b"48x7.03812")  # the fast decoder hands this to pynmeagps
    for lines in ([good] * 50, [good] * 25 + [bad] + [good] * 24):
        text = b"".join(lines)
        ends = np.cumsum([len(x) for x in lines])
        starts = ends - np.array([len(x) for x in lines])
        if bad in lines:
            with pytest.raises(Unsupported, match="plain form"):
                gga_times(text, starts, ends)
        else:
            assert gga_times(text, starts, ends).tolist() == [45319 * 10**6] * 50


def test_nav_pvt_epochs_equal_the_live_assembler_on_every_real_log(shared_data: Path) -> None:
    """Each real log's NAV-PVT / NAV-HPPOSLLH frames as a stream: the epochs decoded as arrays
    against pyubx2's messages through the live epoch assembler."""
    cfg = GnssConfig.from_mapping({"reference": {"lat": 46.0, "lon": 14.0, "h_m": 300.0}, "gate": "none"})
    seen = 0
    for path in _real_logs(shared_data):
        frames = [f for f in _frames(path) if f.identity in ("NAV-PVT", "NAV-HPPOSLLH")]
        if not frames:
            continue
        stream = b"".join(f.raw for f in frames)
        assembler = EpochAssembler(sources=cfg.sources, ctx=TimeContext())
        epochs = [e for f in frames for e in assembler.add_message(f.identity, UBXReader.parse(f.raw))]
        epochs += assembler.finish()
        try:
            cols = decode_gnss(stream, np.array([len(stream)]), cfg)
        except Unsupported as exc:
            pytest.fail(f"{path.name}: {exc}")
        assert cols.t.tolist() == [e.t for e in epochs], path.name
        assert cols.values["gnss.h_acc_mm"].tolist() == [e.h_acc_mm for e in epochs], path.name
        assert cols.values["gnss.num_sv"].tolist() == [e.num_sv for e in epochs], path.name
        enu = np.array([to_enu_mm(e, cfg.reference, cfg.relpos_origin_mm) for e in epochs])
        for k, ch in enumerate(("gnss.e_mm", "gnss.n_mm", "gnss.u_mm")):
            assert cols.values[ch].tolist() == enu[:, k].tolist(), (path.name, ch)
        seen += len(epochs)
    assert seen >= 60


def test_agent_replay_says_which_path_ran(tmp_path: Path) -> None:
    _capture(tmp_path / "cap", 60.0, {"rain": [{"t_s": 0, "mm_per_h": 5.0}]}, (0.0, 0.0))
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"sensors": SENSORS, "store": {"retention_days": 30}}))
    app = typer.Typer()
    replay_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `replay` a sub-command
    docs = []
    for extra in ([], ["--jsonl", str(tmp_path / "out.jsonl")]):
        res = CliRunner().invoke(
            app, ["replay", str(tmp_path / "cap"), "--config", str(cfg), "--json", *extra]
        )
        assert res.exit_code == 0, res.output
        docs.append(json.loads(res.output.strip().splitlines()[-1]))
    assert [d["mode"] for d in docs] == ["columnar", "records"]
    assert docs[0]["samples"] == docs[1]["samples"] and docs[0]["steps"] == docs[1]["steps"]
