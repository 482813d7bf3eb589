"""The fixed-offset decoders (agent/sensors/gnss_fast.py) against pyubx2 / pynmeagps, the references
they stand in for: every NAV-PVT, NAV-HPPOSLLH, GGA and RMC in every real capture, field for field,
and the epochs assembled from them, epoch for epoch."""

from __future__ import annotations

import gzip
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.sensors.gnss import PARSED_TYPES, Reference
from agent.sensors.gnss_epochs import EpochAssembler, TimeContext
from agent.sensors.gnss_fast import FAST_TYPES, parse_nmea, parse_ubx
from agent.sensors.gnss_frames import GnssFramer, ubx_checksum
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate

LOGS = "gnss-receiver-logs"
SOURCES = ("NAV-PVT", "NAV-RELPOSNED", "GGA", "GNS", "NAV-SOL")


def _captures(shared_data: Path) -> list[Path]:
    root = shared_data / LOGS
    skip = {".md", ".gpsd", ".05n", ".05o"}
    return sorted(
        p for p in root.rglob("*") if p.is_file() and p.suffix not in skip and "COPYING" not in p.name
    )


def _read(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _frames(data: bytes, fast: bool, types: frozenset[str] = PARSED_TYPES) -> list[Any]:
    framer = GnssFramer(types, fast=fast)
    out = []
    for i in range(0, len(data), 4096):
        out += framer.feed(data[i : i + 4096])
    return out + framer.finish()


def _simulated() -> bytes:
    ref = Reference(lat=46.5, lon=11.3, h_m=1500.0)
    traj = Trajectory(t_s=(0.0, 60.0), e_mm=(0.0, 5.0), n_mm=(0.0, 1.0), u_mm=(0.0, -1.0))
    cfg = SimConfig(
        reference=ref, trajectory=traj, rate_hz=10.0, duration_s=60.0, emit=("NAV-PVT", "NAV-HPPOSLLH", "GGA")
    )
    return b"".join(ep.data for ep in simulate(cfg))


def test_fast_decoders_equal_the_libraries_on_every_real_capture(shared_data: Path) -> None:
    compared: Counter[str] = Counter()
    fallback: Counter[str] = Counter()
    files = _captures(shared_data)
    assert len(files) >= 8
    for path in files:
        for frame in _frames(_read(path), fast=False, types=FAST_TYPES):
            kind = frame.identity if frame.protocol == "UBX" else frame.identity[2:]
            if kind not in FAST_TYPES or frame.msg is None:
                continue
            fast = parse_ubx(frame.identity, frame.raw) if frame.protocol == "UBX" else parse_nmea(frame.raw)
            if fast is None:
                fallback[kind] += 1
                continue
            for name, value in vars(fast).items():
                if name == "identity":
                    continue
                ref = getattr(frame.msg, name)
                assert _same(value, ref), f"{path.name} {kind}.{name}: fast {value!r} vs reference {ref!r}"
            compared[kind] += 1
    # every type occurs in the real logs, and nearly all of them take the fast path
    assert set(compared) == FAST_TYPES, compared
    assert sum(compared.values()) > 1000
    assert sum(fallback.values()) <= 0.05 * sum(compared.values()), fallback


def test_epochs_are_the_same_with_and_without_the_fast_path(shared_data: Path) -> None:
    streams = [(p.name, _read(p)) for p in _captures(shared_data)] + [("simulated", _simulated())]
    total = 0
    for name, data in streams:
        results = []
        for fast in (False, True):
            asm = EpochAssembler(sources=SOURCES, ctx=TimeContext())
            epochs = []
            for frame in _frames(data, fast):
                if frame.msg is not None:
                    epochs += asm.add_message(frame.identity, frame.msg)
            epochs += asm.finish()
            results.append((epochs, dict(asm.drops)))
        ref, got = results
        assert len(ref[0]) == len(got[0]), name
        for a, b in zip(ref[0], got[0], strict=True):
            assert a.source == b.source and a.t == b.t, name
            for field in ("fix_type", "carrier", "fix_ok", "num_sv", "h_acc_mm", "hdop", "lat", "lon", "h_m"):
                assert _same(getattr(a, field), getattr(b, field)), (name, field, a, b)
        assert ref[1] == got[1], name
        total += len(ref[0])
    assert total > 1000


@pytest.mark.parametrize("n", [0, 1, 2, 7, 92, 100, 1000])
def test_closed_form_checksum_is_the_running_one(n: int) -> None:
    body = bytes((i * 37 + 11) & 0xFF for i in range(n))
    a = b = 0
    for byte in body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    assert ubx_checksum(body) == bytes((a, b))


def test_unusual_sentences_go_to_the_library() -> None:
    assert parse_nmea(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n") is not None
    assert parse_nmea(b"$GPGGA,1235,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n") is None  # time
    assert (
        parse_nmea(b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M*47\r\n") is None
    )  # fields
    assert parse_nmea(b"$XXGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n") is None
    assert (
        parse_ubx("NAV-PVT", b"\xb5\x62\x01\x07" + (84).to_bytes(2, "little") + bytes(86)) is None
    )  # length


def test_replay_store_is_the_same_with_the_library_parsers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agent replay` of a 10 Hz GNSS (NAV-PVT + HPPOSLLH + GGA/RMC) + 100 Hz seismic capture: the
    store written with the fast decoders equals, sample for sample, the one pyubx2/pynmeagps give."""
    import agent.sensors.gnss_frames as frames_mod
    from agent.features.settings import StoreConfig
    from agent.features.store import Store
    from agent.sensors.capture import CaptureWriter
    from agent.sensors.replay import replay
    from agent.sensors.settings import SensorsConfig
    from firmware_bridge.device_model import generate_frames
    from firmware_bridge.scenario import scenario_from_dict

    start, seconds = 1_767_225_600.0, 60.0
    ref = Reference(lat=46.5, lon=11.3, h_m=1500.0)
    scenario = scenario_from_dict(
        {
            "duration_s": seconds,
            "start_utc": start,
            "seismic_rate_hz": 100,
            "seismic_block": 50,
            "seismic_events": [{"t_s": 30, "duration_s": 5, "amplitude_counts": 2e6}],
            "rain": [{"t_s": 0, "mm_per_h": 8.0}],
            "wire": [{"t_s": 45, "state": 1}],
            "heartbeat_period_s": 10.0,
        }
    )
    traj = Trajectory(t_s=(0.0, seconds), e_mm=(0.0, 5.0), n_mm=(0.0, 1.0), u_mm=(0.0, -1.0))
    sim = SimConfig(
        reference=ref,
        trajectory=traj,
        start_utc=start,
        rate_hz=10.0,
        duration_s=seconds,
        emit=("NAV-PVT", "NAV-HPPOSLLH", "GGA"),
    )
    cap = tmp_path / "capture"
    with CaptureWriter(cap) as writer:
        bridge, gnss = writer.add_port("bridge0", "bridge"), writer.add_port("gnss0", "ubx")
        for t_s, data in generate_frames(scenario):
            bridge(start + t_s, data)
        for ep in simulate(sim):
            gnss(ep.t + 0.02, ep.data)
    sensors = SensorsConfig.model_validate(
        {
            "gnss": {"reference": {"lat": ref.lat, "lon": ref.lon, "h_m": ref.h_m}, "epoch_rate_hz": 10.0},
            "seismic": {"pgv_window_s": 1.0},
        }
    )
    stores = []
    for name, fast in (("fast", True), ("library", False)):
        if not fast:
            monkeypatch.setattr(frames_mod, "FAST_TYPES", frozenset())
        with Store(StoreConfig.model_validate({"path": tmp_path / f"{name}.sqlite"})) as store:
            result = replay(cap, sensors, store)
            stores.append((store.read_samples(start - 3600, start + 2 * seconds), result))
    (fast_s, fast_r), (lib_s, lib_r) = stores
    assert sorted(fast_s) == sorted(lib_s) and "gnss.e_mm" in fast_s and "seismic.pgv_mm_s" in fast_s
    for ch, (t, v) in lib_s.items():
        assert t.tobytes() == fast_s[ch][0].tobytes() and v.tobytes() == fast_s[ch][1].tobytes(), ch
    assert fast_r.samples == lib_r.samples and fast_r.samples["gnss.e_mm"] >= 590
