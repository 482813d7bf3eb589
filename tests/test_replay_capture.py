"""`agent replay`: a recorded capture through the real pipeline, faster than real time.

The captures here are SYNTHETIC: written with the capture writer from the bridge simulator's frames
and the GNSS simulator's epochs, each record stamped with the time the device sent it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from agent import replay_cli
from agent.errors import CaptureError, ConfigError
from agent.features.aggregate import HOUR_S
from agent.features.settings import StoreConfig
from agent.features.site_series import read_site_series
from agent.features.store import Store
from agent.replay_cli import load_sections
from agent.sensors.capture import CaptureWriter
from agent.sensors.gnss import Reference
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate
from agent.sensors.replay import replay
from agent.sensors.seismic import SeismicConfig, SeismicProcessor
from agent.sensors.settings import SensorsConfig
from firmware_bridge.device_model import generate_frames
from firmware_bridge.scenario import Scenario, scenario_from_dict

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
REF = Reference(46.05, 14.50, 400.0)
HOURS = 2
CONFIG: dict[str, Any] = {
    "sensors": {
        "gnss": {"reference": {"lat": REF.lat, "lon": REF.lon, "h_m": REF.h_m}, "epoch_rate_hz": 0.1},
        "rain": {"mm_per_tip": 0.2, "frame_period_s": 60.0, "max_gap_s": 120.0},
        "device": {"heartbeat_period_s": 10.0},
        "seismic": {"pgv_window_s": 60.0},
    },
    "store": {"retention_days": 30},
}


def _scenario(duration: float = HOURS * HOUR_S) -> Scenario:
    return scenario_from_dict(
        {
            "duration_s": duration,
            "start_utc": START,
            "seismic_rate_hz": 50,
            "seismic_block": 250,
            "seismic_events": [{"t_s": 1500, "duration_s": 20, "amplitude_counts": 2e6, "freq_hz": 6.0}],
            "rain": [
                {"t_s": 300, "mm_per_h": 10.0},
                {"t_s": 1500, "mm_per_h": 0.0},
                {"t_s": 4000, "mm_per_h": 4},
            ],
            "wire": [{"t_s": 4500, "state": 2}],
            "rain_period_s": 60.0,
            "heartbeat_period_s": 10.0,
            "garbage": [{"t_s": 2000, "nbytes": 300}],
        }
    )


def _write_capture(directory: Path, scenario: Scenario) -> list[float]:
    """Capture of one bridge and one GNSS port; returns the GNSS epoch times sent."""
    traj = Trajectory(t_s=(0.0, scenario.duration_s), e_mm=(5.0, 25.0), n_mm=(0.0, 0.0), u_mm=(0.0, -4.0))
    sim = SimConfig(
        reference=REF, trajectory=traj, start_utc=START, duration_s=scenario.duration_s, rate_hz=0.1, seed=3
    )
    with CaptureWriter(directory) as writer:
        bridge = writer.add_port("bridge0", "bridge")
        gnss = writer.add_port("gnss0", "ubx")
        for t_s, data in generate_frames(scenario):
            bridge(START + t_s + 0.01, data)
        sent = []
        for ep in simulate(sim):
            if ep.data:
                gnss(ep.t + 0.05, ep.data)
                sent.append(ep.t)
    return sent


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    directory = tmp_path_factory.mktemp("cap") / "capture"
    return directory, _write_capture(directory, _scenario())


def _sensors() -> SensorsConfig:
    return SensorsConfig.model_validate(CONFIG["sensors"])


def test_replay_produces_the_intended_steps_faster_than_real_time(
    capture: tuple[Path, list[float]], tmp_path: Path
) -> None:
    directory, sent = capture
    scenario = _scenario()
    with Store(StoreConfig(path=tmp_path / "r.sqlite")) as store:
        result = replay(directory, _sensors(), store)
        steps = store.read_steps(HOUR_S, START, START + HOURS * HOUR_S)
    tips = [scenario.physical_tips_until(HOUR_S * h) for h in range(HOURS + 1)]
    np.testing.assert_allclose(steps.values["rain_mm"], [0.2 * (b - a) for a, b in itertools.pairwise(tips)])
    assert list(steps.counts["disp_e_mm"]) == [360, 360] == [sum(1 for t in sent if t < START + HOUR_S), 360]
    assert steps.values["disp_e_mm"] == pytest.approx([10.0, 20.0], abs=1.0)
    assert list(steps.values["wire_state"]) == [0.0, 2.0]
    assert steps.values["seismic_events"][0] >= 1 and steps.values["seismic_events"][1] == 0
    assert steps.values["pgv_mm_s"][0] > 10 * steps.values["pgv_mm_s"][1] > 0
    assert result.steps == {86400: 1, 3600: 3}  # the frames sent at the very end open hour 2
    assert result.samples["gnss.e_mm"] == len(sent)
    # The line noise is counted, nothing else is dropped.
    drops = result.drops()
    assert drops and all(k.startswith("decoders.bridge0.frames") for k in drops), drops
    assert result.speed > 100, f"replay ran at only {result.speed:.0f} x real time"


def test_replay_cli_summary_and_jsonl(capture: tuple[Path, list[float]], tmp_path: Path) -> None:
    directory, sent = capture
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps(CONFIG))
    app = typer.Typer()
    replay_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps `replay` a sub-command
    out = tmp_path / "out.jsonl"
    store = tmp_path / "replayed.sqlite"
    csv = tmp_path / "site.csv"
    args = ["replay", str(directory), "--config", str(cfg), "--jsonl", str(out), "--store", str(store)]
    args += ["--json", "--site-series", str(csv), "--station", "SIM", "--synthetic"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output.strip().splitlines()[-1])
    assert doc["samples"]["gnss.e_mm"] == len(sent)
    assert doc["steps"] == {"3600": 3, "86400": 1}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {line["type"] for line in lines}
    assert kinds == {"sample", "step"}
    assert sum(1 for line in lines if line["type"] == "sample") == sum(doc["samples"].values())
    hourly = [line for line in lines if line["type"] == "step" and line["step_s"] == 3600]
    assert [line["wire_state"] for line in hourly] == [0.0, 2.0, 2.0]
    assert store.exists()
    # The daily steps as a training site-series CSV.
    series = read_site_series(csv)
    assert series.station == "SIM" and series.synthetic and series.step == "P1D"
    assert series.columns["rain_mm"][0] == pytest.approx(sum(line["rain_mm"] or 0.0 for line in hourly))
    assert series.columns["disp_e_mm"][0] == pytest.approx(15.0, abs=1.0)  # median of the day's creep
    # Human summary, and a second run refuses to write into the existing store.
    res = CliRunner().invoke(app, ["replay", str(directory), "--config", str(cfg), "--store", str(store)])
    assert res.exit_code == 2 and "exists" in res.output


def test_toml_configuration_goes_through_the_agent_loader(tmp_path: Path) -> None:
    toml = tmp_path / "agent.toml"
    toml.write_text(
        "[sensors.gnss.reference]\nlat = 46.05\nlon = 14.5\nh_m = 400.0\n"
        '[sensors.rain]\nmm_per_tip = 0.5\n[store]\npath = "store.sqlite"\n'
    )
    toml.chmod(0o644)
    sensors, store = load_sections(toml)
    assert sensors.rain.mm_per_tip == 0.5 and sensors.gnss.reference is not None
    assert store.path == tmp_path / "store.sqlite"  # relative to the configuration file


def test_replay_speed_factor_paces_the_records(tmp_path: Path) -> None:
    directory = tmp_path / "short"
    _write_capture(directory, _scenario(duration=20.0))
    with Store(StoreConfig(path=tmp_path / "r.sqlite")) as store:
        result = replay(directory, _sensors(), store, speed=40.0)
    assert result.capture_s == pytest.approx(19.05, abs=1.0)
    assert result.wall_s >= result.capture_s / 40.0 * 0.95
    assert result.speed == pytest.approx(40.0, rel=0.3)


@pytest.mark.faults
def test_truncated_capture_and_bad_inputs(tmp_path: Path) -> None:
    directory = tmp_path / "cut"
    _write_capture(directory, _scenario(duration=600.0))
    cap = directory / "bridge0.cap"
    cap.write_bytes(cap.read_bytes()[:-7])  # power loss while writing the last record
    with Store(StoreConfig(path=tmp_path / "r.sqlite")) as store:
        result = replay(directory, _sensors(), store)
    assert result.truncated_tail_bytes > 0
    assert result.samples["rain.mm"] > 0
    with pytest.raises(CaptureError):
        replay(tmp_path / "nothing", _sensors(), Store(StoreConfig(path=tmp_path / "x.sqlite")))
    bad = tmp_path / "bad.toml"
    bad.write_text("[sensors]\nports = 3\n")
    with pytest.raises(ConfigError, match="sensors"):
        load_sections(bad)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"sensors": {"rain": {"mm_per_tip": -1}}}))
    with pytest.raises(ConfigError, match="mm_per_tip"):
        load_sections(bad_json)
    mismatched = SensorsConfig.model_validate(
        {**CONFIG["sensors"], "ports": [{"name": "gnss0", "path": "/dev/null", "kind": "bridge"}]}
    )
    with pytest.raises(CaptureError, match="gnss0"):
        replay(directory, mismatched, Store(StoreConfig(path=tmp_path / "y.sqlite")))


def test_replay_of_a_real_receiver_log(shared_data: Path, tmp_path: Path) -> None:
    """REAL data: gpsd's u-blox ZED-F9P regression log (Dunedin NZ, 2019-04-12, 655 1-Hz standalone
    epochs, static antenna; ../shared/data/gnss-receiver-logs/SOURCES.md) replayed in 4 KiB reads."""
    log = (shared_data / "gnss-receiver-logs/gpsd_regress/ublox-zed-f9p_hpg1.11.log").read_bytes()
    directory = tmp_path / "real"
    t_read = 1_555_031_943.0  # receive times of the reads (the epochs carry their own RMC date/time)
    with CaptureWriter(directory) as writer:
        port = writer.add_port("gnss0", "ubx")
        for k, i in enumerate(range(0, len(log), 4096)):
            port(t_read + 2.15 * k, log[i : i + 4096])  # about 1.9 kB per 1-s epoch
    sensors = SensorsConfig.model_validate(
        {"gnss": {"reference": {"lat": -45.87, "lon": 170.5, "h_m": 0.0}, "gate": "standalone"}}
    )
    with Store(StoreConfig(path=tmp_path / "r.sqlite")) as store:
        result = replay(directory, sensors, store)
        steps = store.read_steps(HOUR_S, t_read - HOUR_S, t_read + HOUR_S)
    assert result.samples["gnss.e_mm"] == 655  # every epoch of the log, none lost to read boundaries
    (h,) = np.flatnonzero(steps.counts["disp_e_mm"])
    assert steps.times[h] == 1_555_030_800.0  # 2019-04-12T01:00:00Z
    assert steps.counts["disp_e_mm"][h] == 655
    assert steps.completeness["disp_e_mm"][h] == pytest.approx(655 / 3600)  # 1 Hz expected
    # Robust scatter of a static standalone antenna: about 1.3 m east, 0.7 m north (SOURCES.md).
    assert 800 < steps.values["disp_e_spread_mm"][h] < 1800
    assert 400 < steps.values["disp_n_spread_mm"][h] < 1000
    assert result.drops() == {"decoders.gnss0.errors": 1, "decoders.gnss0.errors_by_kind.nmea_bad_line": 1}


def test_real_geophone_trace_through_bridge_frames_capture_and_replay(
    shared_data: Path, tmp_path: Path
) -> None:
    """REAL data: BW.UH4 EHZ (Unterhaching, 2010-05-27, 100 Hz, 3 local events; obspy test data, LGPL-3.0,
    ../shared/data/obspy-seismic-samples/SOURCES.md) played by the bridge simulator as SEISMIC frames
    (blocks of 50), captured, replayed: the triggers equal the seismic processor fed the whole trace
    at once, and fall in obspy's expected event windows that include UH4."""
    obspy = pytest.importorskip("obspy")
    tr = obspy.read(str(shared_data / "obspy-seismic-samples/derived_mseed/BW.UH4..EHZ.2010-05-27.mseed"))[0]
    t0, rate = float(tr.stats.starttime.timestamp), float(tr.stats.sampling_rate)
    counts = np.rint(tr.data.astype(np.float64)).astype(np.int64)
    scenario = scenario_from_dict(
        {
            "duration_s": len(counts) / rate,
            "start_utc": t0,
            "seismic_rate_hz": int(rate),
            "seismic_block": 50,
            "seismic_trace": [int(c) for c in counts],
        }
    )
    directory = tmp_path / "uh4"
    with CaptureWriter(directory) as writer:
        port = writer.add_port("bridge0", "bridge")
        for t_s, data in generate_frames(scenario):
            port(t0 + t_s, data)
    seismic_cfg = {"band_hz": [10.0, 20.0], "sta_s": 0.5, "lta_s": 10.0, "thr_on": 3.5, "thr_off": 1.0}
    sensors = SensorsConfig.model_validate({"seismic": seismic_cfg})
    with Store(StoreConfig(path=tmp_path / "r.sqlite")) as store:
        result = replay(directory, sensors, store)
        got = store.read_samples(t0 - 10, t0 + 3600, ["seismic.trigger"])["seismic.trigger"]
    direct = SeismicProcessor(SeismicConfig(**sensors.seismic.processor_kwargs()))
    want = direct.feed(t0, 0, rate, 1.0, counts) + direct.finish()
    want_on = [s.t for s in want if s.channel == "seismic.trigger" and s.value == 1.0]
    got_on = [float(t) for t, v in zip(*got, strict=True) if v == 1.0]
    assert got_on == pytest.approx(want_on, abs=1e-6) and len(got_on) >= 2
    assert result.counters["decoders"]["bridge0"]["seismic"]["samples"] == len(counts) - (len(counts) % 50)
    # obspy's expected network events 1 and 3 (16:24:31-35 and 16:27:27-33 UTC) include UH4.
    for lo, hi in (
        ("2010-05-27T16:24:31", "2010-05-27T16:24:35"),
        ("2010-05-27T16:27:27", "2010-05-27T16:27:33"),
    ):
        a, b = obspy.UTCDateTime(lo).timestamp, obspy.UTCDateTime(hi).timestamp
        assert any(a - 2.0 <= t <= b for t in got_on), (lo, got_on)
