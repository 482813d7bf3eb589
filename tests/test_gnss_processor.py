"""GNSS epochs, gating, local ENU and per-step solutions: real captures and the (synthetic) simulator."""

from __future__ import annotations

import gzip
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pymap3d
import pytest

from agent.errors import ConfigError
from agent.sensors.gnss import (
    GATE_PRESETS,
    GateConfig,
    GatedEpoch,
    GnssConfig,
    GnssProcessor,
    Reference,
    gate,
    solve_steps,
)
from agent.sensors.gnss_epochs import CARRIER_FIXED, CARRIER_FLOAT, CARRIER_NONE, Epoch
from agent.sensors.gnss_sim import QualitySegment, SimConfig, Trajectory, simulate

LOGS = "gnss-receiver-logs"
# Dunedin antenna from the gpsd log header (45.877591500S 170.500124833E); GGA alt 16.7 + sep 1.8 m
DUNEDIN = Reference(-45.8775915, 170.500124833, 18.5)
REF = Reference(46.05, 14.50, 420.0)  # synthetic site


def _run(data: bytes, cfg: GnssConfig) -> GnssProcessor:
    proc = GnssProcessor(cfg, keep_epochs=True)
    proc.feed(data)
    proc.finish()
    return proc


def test_gnss_real_hpg_log_standalone_scatter(shared_data: Path) -> None:
    """655 GGA epochs, standalone fix (quality 1); SOURCES.md: scatter ~0.7 m N, 1.3 m E, 1.2 m U."""
    data = (shared_data / LOGS / "gpsd_regress/ublox-zed-f9p_hpg1.11.log").read_bytes()
    proc = _run(data, GnssConfig(DUNEDIN, gate=GATE_PRESETS["standalone"]))
    assert proc.epochs_total == proc.epochs_gated == 655
    good = np.array([[e.e_mm, e.n_mm, e.u_mm] for e in proc.epochs])
    std = good.std(axis=0)
    assert 1000 < std[0] < 1600 and 450 < std[1] < 900 and 900 < std[2] < 1600
    (step,) = solve_steps(proc.epochs, step_s=86400.0)
    assert step.count == step.total == 655 and step.fraction_gated == 1.0
    # the header position agrees with the median within the standalone scatter
    assert abs(step.median_mm[0]) < 1500 and abs(step.median_mm[1]) < 1000


def test_gnss_real_logs_rtk_gate_rejects_standalone_for_carrier(shared_data: Path) -> None:
    data = (shared_data / LOGS / "gpsd_regress/ublox-zed-f9p-nmea.log").read_bytes()
    proc = _run(data, GnssConfig(DUNEDIN, gate=GATE_PRESETS["rtk-fixed"]))
    assert proc.epochs_total == 29 and proc.epochs_gated == 0
    assert proc.rejected["carrier"] == 29
    # GST gives the accuracy of GGA epochs (stdLat 2.3 m, stdLong 3.5 m in the first epoch)
    assert proc.epochs[0].h_acc_mm == pytest.approx(math.hypot(2300, 3500))


def test_gnss_real_nav_pvt_h_acc_gate(shared_data: Path) -> None:
    """ZED-F9P -hp log: 29 NAV-PVT (+HPPOSLLH) epochs whose hAcc (~14 m) fails the standalone 10 m limit."""
    data = (shared_data / LOGS / "gpsd_regress/ublox-zed-f9p-hp.log").read_bytes()
    proc = _run(data, GnssConfig(DUNEDIN, gate=GATE_PRESETS["standalone"]))
    assert proc.epochs_total == 29 and proc.rejected["h_acc"] == 29
    assert all(e.source == "NAV-PVT" for e in proc.epochs)
    relaxed = _run(data, GnssConfig(DUNEDIN, gate=GATE_PRESETS["none"]))
    assert relaxed.epochs_gated == 29
    samples = GnssProcessor(GnssConfig(DUNEDIN, gate=GATE_PRESETS["none"]))
    out = samples.feed(data) + samples.finish()
    assert {s.channel for s in out} == {"gnss.e_mm", "gnss.n_mm", "gnss.u_mm", "gnss.h_acc_mm", "gnss.num_sv"}
    assert len(out) == 29 * 5


def test_gnss_gate_rules_are_pure_and_ordered() -> None:
    cfg = GateConfig(min_carrier="float", min_num_sv=6, max_h_acc_mm=30.0)
    ok = Epoch(t=0.0, source="NAV-PVT", fix_type=3, carrier=CARRIER_FIXED, fix_ok=True, num_sv=12,
               h_acc_mm=10.0, lat=46.0, lon=14.0, h_m=400.0)  # fmt: skip
    assert gate(ok, cfg) is None
    assert gate(replace(ok, carrier=CARRIER_FLOAT), cfg) is None
    assert gate(replace(ok, carrier=CARRIER_NONE), cfg) == "carrier"
    assert gate(replace(ok, fix_ok=False, num_sv=2), cfg) == "fix_not_ok"
    assert gate(replace(ok, fix_type=2), cfg) == "fix_type"
    assert gate(replace(ok, num_sv=5), cfg) == "num_sv"
    assert gate(replace(ok, h_acc_mm=31.0), cfg) == "h_acc"
    assert gate(replace(ok, h_acc_mm=math.nan), cfg) is None
    strict = GateConfig(min_carrier="float", accept_unknown=False)
    assert gate(replace(ok, h_acc_mm=math.nan), strict) == "h_acc"
    assert gate(replace(ok, lat=math.nan), cfg) == "no_position"


def test_gnss_config_from_mapping_and_errors() -> None:
    cfg = GnssConfig.from_mapping(
        {
            "reference": {"lat": 46.0, "lon": 14.0, "h_m": 400.0},
            "gate": {"min_carrier": "float", "fix_types": [3]},
        }
    )
    assert cfg.gate.min_carrier == "float" and cfg.gate.fix_types == frozenset({3})
    assert (
        GnssConfig.from_mapping({"reference": {"lat": 1, "lon": 2, "h_m": 3}, "gate": "standalone"}).gate
        == (GATE_PRESETS["standalone"])
    )
    with pytest.raises(ConfigError, match="reference"):
        GnssConfig.from_mapping({"gate": "standalone"})
    with pytest.raises(ConfigError, match="unknown keys"):
        GnssConfig.from_mapping({"reference": {"lat": 1, "lon": 2, "h_m": 3}, "gate": {"max_sv": 3}})
    with pytest.raises(ConfigError, match="preset"):
        GnssConfig.from_mapping({"reference": {"lat": 1, "lon": 2, "h_m": 3}, "gate": "rtk-perfect"})
    with pytest.raises(ConfigError, match="min_carrier"):
        GateConfig(min_carrier="excellent")
    with pytest.raises(ConfigError, match="valid lat"):
        Reference(123.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="sources"):
        GnssConfig(REF, sources=("GSV",))


# ---- simulator (SYNTHETIC) -> reader -------------------------------------------------------------
STAIRS = Trajectory(  # piecewise-constant displacement, a jump every 120 s (plus a 1 s ramp)
    t_s=(0, 119, 120, 239, 240, 359, 360, 600),
    e_mm=(0, 0, 20, 20, 45, 45, 80, 80),
    n_mm=(0, 0, -10, -10, -25, -25, -40, -40),
    u_mm=(0, 0, 5, 5, 5, 5, -15, -15),
)


@pytest.mark.parametrize(
    ("emit", "sources"),
    [
        (("NAV-PVT", "NAV-HPPOSLLH", "GGA"), ("NAV-PVT", "GGA")),
        (("GGA",), ("GGA",)),
        (("GNS",), ("GNS",)),
        (("NAV-PVT", "NAV-RELPOSNED"), ("NAV-RELPOSNED",)),
    ],
)
def test_gnss_simulated_trajectory_step_medians(emit: tuple[str, ...], sources: tuple[str, ...]) -> None:
    noise = (3.0, 3.0, 6.0)
    origin = (1500.0, -250.0, 30.0)  # rover as seen from the RTK base, for RELPOSNED
    sim = SimConfig(REF, STAIRS, duration_s=480, noise_mm=noise, emit=emit, relpos_origin_mm=origin, seed=5)
    epochs = list(simulate(sim))
    cfg = GnssConfig(REF, sources=sources, relpos_origin_mm=origin)
    proc = _run(b"".join(e.data for e in epochs), cfg)
    assert proc.epochs_gated == 480 and proc.framer.counters.errors == 0
    # every epoch decodes to what the simulator sent, to the message resolution (0.1 mm / 1e-9 deg)
    for got, sent in zip(proc.epochs, epochs, strict=True):
        assert got.t == pytest.approx(sent.t, abs=1e-3)
        assert np.allclose([got.e_mm, got.n_mm, got.u_mm], sent.noisy_enu_mm, atol=0.2)
    steps = solve_steps(proc.epochs, step_s=120.0, t0=sim.start_utc)
    assert [s.count for s in steps] == [120] * 4
    truth = [STAIRS.at(60.0 + 120.0 * k) for k in range(4)]
    for step, true in zip(steps, truth, strict=True):
        tol = 4 * 1.2533 * np.asarray(noise) / math.sqrt(step.count) + 0.5  # 4 sigma of a median, + ramp
        assert np.all(np.abs(np.asarray(step.median_mm) - true) < tol), (step.median_mm, true)
        assert np.all(np.abs(np.asarray(step.mad_mm) - noise) < 0.4 * np.asarray(noise))


def test_gnss_simulated_quality_changes_dropouts_and_corruption() -> None:
    quality = (
        QualitySegment(0.0),
        QualitySegment(100.0, carrier=CARRIER_FLOAT, h_acc_mm=40.0),
        QualitySegment(160.0, carrier=CARRIER_FIXED, num_sv=4),
        QualitySegment(200.0, carrier=CARRIER_FIXED, h_acc_mm=90.0),
        QualitySegment(230.0, fix_type=0),
        QualitySegment(250.0),
    )
    sim = SimConfig(
        REF, STAIRS, duration_s=300, quality=quality, dropout_prob=0.05, corrupt_prob=0.05, seed=9
    )
    epochs = list(simulate(sim))
    proc = _run(b"".join(e.data for e in epochs), GnssConfig(REF))  # rtk-fixed gate, NAV-PVT then GGA
    sent = [e for e in epochs if not e.dropped]
    assert proc.epochs_total <= len(sent)
    assert proc.epochs_total >= len(sent) - sum(e.corrupted for e in sent)
    assert proc.framer.counters.errors >= 1
    expected = {"carrier": 0, "num_sv": 0, "h_acc": 0, "fix_not_ok": 0}
    by_t = {round(e.t, 2): e for e in sent}
    for ep in proc.epochs:
        seg = by_t[round(ep.t, 2)].quality
        if seg.fix_type == 0:
            expected["fix_not_ok"] += 1
        elif seg.carrier != CARRIER_FIXED:
            expected["carrier"] += 1
        elif seg.num_sv < 5:
            expected["num_sv"] += 1
        elif seg.h_acc_mm > 50:
            expected["h_acc"] += 1
    got = {k: proc.rejected[k] for k in expected}
    assert got == expected and all(v > 0 for v in got.values())
    assert proc.epochs_gated == proc.epochs_total - sum(proc.rejected.values())


def test_gnss_nav_sol_agrees_with_gga_in_time_and_position(shared_data: Path) -> None:
    """M8P rover: legacy NAV-SOL (ECEF, GPS week + iTOW - 18 leap s) and GGA of the same epochs."""
    data = gzip.decompress(
        (shared_data / LOGS / "jdesbonnet_static_m8p/rover-20181004-1237.ubx.gz").read_bytes()
    )[:700_000]  # the first ~330 epochs are enough (and fast)
    ref = Reference(53.28, -9.06, 60.0)
    by_source = {}
    for src in ("NAV-SOL", "GGA"):
        proc = _run(data, GnssConfig(ref, gate=GATE_PRESETS["none"], sources=(src,)))
        by_source[src] = {round(e.t, 2): np.array([e.e_mm, e.n_mm, e.u_mm]) for e in proc.epochs}
    assert len(by_source["NAV-SOL"]) >= len(by_source["GGA"]) > 300
    common = sorted(set(by_source["NAV-SOL"]) & set(by_source["GGA"]))
    assert len(common) == len(by_source["GGA"])  # same UTC epochs: the leap-second table is right
    diff = np.array([by_source["NAV-SOL"][k] - by_source["GGA"][k] for k in common])
    # GGA carries 1e-5 arc-minutes (~2 cm) and 0.1 m altitude; NAV-SOL 1 cm ECEF
    assert np.abs(diff[:, :2]).max() < 30 and np.abs(diff[:, 2]).max() < 150


def test_gnss_nav_sol_neo_m8t_bend(shared_data: Path) -> None:
    data = (shared_data / LOGS / "gpsd_regress/ublox-neo-m8t.log").read_bytes()
    bend = Reference(44.0688076, -121.3143065, 1110.7)
    proc = _run(data, GnssConfig(bend, gate=GATE_PRESETS["standalone"], sources=("NAV-SOL",)))
    assert proc.epochs_gated == 39
    assert proc.epochs[0].t == pytest.approx(1540500946.0, abs=0.01)  # 2018-10-25T20:55:46Z
    (step,) = solve_steps(proc.epochs, step_s=3600.0)
    assert all(abs(m) < 100 for m in step.median_mm) and all(50 < s < 400 for s in step.mad_mm)


def test_gnss_step_spread_drops_when_selective_availability_ended(shared_data: Path) -> None:
    """Real static receiver across the SA switch-off (2000-05-02): the per-step robust spread of the
    horizontal position drops by about 10x (SOURCES.md: ~30 m before, ~3 m after). Rows are
    'PVT tow fix lat lon h ve vn' text, not UBX/NMEA, so they are read with numpy here."""
    spreads = {}
    std = GATE_PRESETS["standalone"]
    for part in ("pre", "post"):
        path = shared_data / LOGS / f"jdesbonnet_sa_off_2000/gps_sa_off_{part}_transition.dat.gz"
        rows = np.loadtxt(path, usecols=(1, 2, 3, 4, 5))  # numpy reads .gz itself
        tow, fix, lat, lon, h = rows.T
        ref = Reference(float(np.median(lat)), float(np.median(lon)), float(np.median(h)))
        # the gate is the pure rule per epoch; ENU is the same pymap3d call as to_enu_mm, vectorised
        reasons = [
            gate(Epoch(t=0.0, source="GGA", fix_type=int(f), fix_ok=f >= 2, lat=1.0, lon=1.0, h_m=1.0), std)
            for f in fix
        ]
        e_m, n_m, u_m = pymap3d.geodetic2enu(lat, lon, h, ref.lat, ref.lon, ref.h_m)
        epochs = [
            GatedEpoch(t, r is None, r, "GGA", 1e3 * e, 1e3 * n, 1e3 * u, math.nan, math.nan, 0, 3)
            for t, r, e, n, u in zip(tow, reasons, e_m, n_m, u_m, strict=True)
        ]
        steps = solve_steps(epochs, step_s=1800.0)
        assert sum(s.total for s in steps) == len(rows) > 19_000
        spreads[part] = np.median([math.hypot(*s.mad_mm[:2]) for s in steps if s.count > 900])
    assert spreads["pre"] > 8_000 and spreads["post"] < 3_000
    assert spreads["pre"] / spreads["post"] > 5
