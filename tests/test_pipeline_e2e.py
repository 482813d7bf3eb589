"""Done-when test: device simulators on pseudo-terminals -> pipeline -> store -> per-step features.

SYNTHETIC data: the MCU bridge simulator (rain, wire alarm, heartbeat) and the GNSS simulator (a creeping
antenna) run time-compressed on ptys; the pipeline reads them through pyserial like live ports, with a
clock compressed by the same factor. The hourly steps must equal what the simulators intended: rain
totals exact, GNSS medians within noise, wire-state changes present (and pushed to subscribers at once).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from agent.features.aggregate import HOUR_S
from agent.features.samples import Sample
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.sensors.gnss import Reference
from agent.sensors.gnss_sim import SimConfig, Trajectory, write_to_fd
from agent.sensors.pipeline import Pipeline
from agent.sensors.replay import replay
from agent.sensors.settings import SensorsConfig
from firmware_bridge.pty_device import PtyDevice
from firmware_bridge.scenario import scenario_from_dict

SPEED = 1200.0  # one simulated hour in 3 s
HOURS = 3
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
REF = Reference(46.05, 14.50, 400.0)
GNSS_RATE = 0.1  # one epoch every 10 s keeps the pty traffic small at this speed
# Rain falls well inside each hour, so clock jitter at step boundaries cannot move a tip.
RAIN = [
    {"t_s": 600, "mm_per_h": 6.0},
    {"t_s": 1800, "mm_per_h": 0.0},
    {"t_s": 4200, "mm_per_h": 12.0},
    {"t_s": 6000, "mm_per_h": 0.0},
]
WIRE = [{"t_s": 5000, "state": 1}, {"t_s": 9400, "state": 0}]  # tripped in hour 1, reset in hour 2


def _config(bridge_port: str, gnss_port: str, capture_dir: Path) -> SensorsConfig:
    return SensorsConfig.model_validate(
        {
            "ports": [
                {"name": "bridge0", "path": bridge_port, "kind": "bridge"},
                {"name": "gnss0", "path": gnss_port, "kind": "gnss"},
            ],
            "gnss": {
                "reference": {"lat": REF.lat, "lon": REF.lon, "h_m": REF.h_m},
                "gate": "rtk-fixed",
                "epoch_rate_hz": GNSS_RATE,
                "discipline_clock": False,  # a simulated clock: read latency x speed is no clock error
            },
            "rain": {"mm_per_tip": 0.2, "frame_period_s": 60.0, "max_gap_s": 120.0},
            "device": {"heartbeat_period_s": 10.0},
            "capture": {"enabled": True, "dir": str(capture_dir)},
        }
    )


@pytest.mark.timeout(120)
def test_simulators_on_ptys_to_hourly_steps(tmp_path: Path) -> None:
    duration = HOURS * HOUR_S
    scenario = scenario_from_dict(
        {
            "duration_s": duration,
            "start_utc": START,
            "seismic_rate_hz": 0,
            "rain": RAIN,
            "wire": WIRE,
            "rain_period_s": 60.0,
            "heartbeat_period_s": 10.0,
        }
    )
    traj = Trajectory(t_s=(0.0, duration), e_mm=(0.0, 30.0), n_mm=(0.0, -12.0), u_mm=(0.0, -6.0))
    sim = SimConfig(
        reference=REF, trajectory=traj, start_utc=START, rate_hz=GNSS_RATE, duration_s=duration, seed=7
    )
    gnss_master, gnss_slave = os.openpty()
    tty.setraw(gnss_slave)
    bridge = PtyDevice(scenario, speed=SPEED)
    cfg = _config(bridge.port, os.ttyname(gnss_slave), tmp_path / "captures")
    store = Store(StoreConfig(path=tmp_path / "store.sqlite"))
    wire_seen: list[tuple[float, Sample]] = []  # (wall time it reached the subscriber, sample)
    mono0 = time.monotonic()

    def clock() -> float:
        return START + (time.monotonic() - mono0) * SPEED

    pipeline = Pipeline(cfg, store, clock=clock, steps_every_s=0.5)
    pipeline.subscribe(
        lambda port, samples: wire_seen.extend((clock(), s) for s in samples if s.channel == "wire.state")
    )
    epochs: list = []
    try:
        pipeline.start()
        time.sleep(0.3)  # let both ports open before the devices start talking
        mono0 = time.monotonic()
        bridge.start()
        gnss = threading.Thread(target=lambda: epochs.extend(write_to_fd(gnss_master, sim, speed=SPEED)))
        gnss.start()
        gnss.join(60)
        assert bridge.done.wait(60), "bridge simulator did not finish"
        time.sleep(0.5)  # the last bytes cross the ptys
    finally:
        pipeline.stop()
        bridge.stop()
        for fd in (gnss_master, gnss_slave):
            os.close(fd)
    try:
        steps = store.read_steps(HOUR_S, START, START + duration)
        counters = pipeline.counters()
        live = store.read_samples(START - HOUR_S, START + 2 * duration)
        saved = store.counters()  # persisted by the pipeline at its steps and at stop
    finally:
        store.close()
    # The raw capture recorded on the way replays to exactly the same samples (same code after bytes).
    (capture_dir,) = (tmp_path / "captures").iterdir()
    with Store(StoreConfig(path=tmp_path / "replayed.sqlite")) as again:
        replay(capture_dir, cfg, again)
        replayed = again.read_samples(START - HOUR_S, START + 2 * duration)
    assert sorted(replayed) == sorted(live)
    for ch, (t, v) in live.items():
        np.testing.assert_array_equal(replayed[ch][0], t, err_msg=ch)
        np.testing.assert_array_equal(np.sort(replayed[ch][1]), np.sort(v), err_msg=ch)

    assert list(steps.times) == [START + HOUR_S * h for h in range(HOURS)]
    # Rain: exact per step (what the device counted and delivered).
    tips = [scenario.physical_tips_until(HOUR_S * h) for h in range(HOURS + 1)]
    want_rain = [0.2 * (b - a) for a, b in itertools.pairwise(tips)]
    assert want_rain == pytest.approx([2.0, 6.0, 0.0])
    np.testing.assert_allclose(steps.values["rain_mm"], want_rain, atol=1e-9)
    assert (steps.completeness["rain_mm"] > 0.95).all()
    # GNSS: the per-step median equals the simulated trajectory at mid-step within noise.
    sent = np.array([ep.t for ep in epochs if not ep.dropped])
    for h in range(HOURS):
        mid = (h + 0.5) * HOUR_S
        e, n, u = traj.at(mid)
        assert steps.values["disp_e_mm"][h] == pytest.approx(e, abs=1.5)
        assert steps.values["disp_n_mm"][h] == pytest.approx(n, abs=1.5)
        assert steps.values["disp_u_mm"][h] == pytest.approx(u, abs=3.0)
    n_sent = [
        int(((sent >= START + HOUR_S * h) & (sent < START + HOUR_S * (h + 1))).sum()) for h in range(HOURS)
    ]
    assert list(steps.counts["disp_e_mm"]) == n_sent == [360, 360, 360]
    np.testing.assert_allclose(steps.completeness["disp_e_mm"], 1.0)
    # Wire alarm: the changes are in the steps and reached the subscriber as they were decoded.
    assert list(steps.values["wire_state"]) == [0.0, 1.0, 1.0]
    trips = [(seen, s) for seen, s in wire_seen if s.value == 1.0]
    assert trips, "the trip never reached the subscriber"
    first_seen, first = trips[0]
    assert first.t == pytest.approx(START + 5000, abs=0.2 * SPEED)
    assert first_seen - (START + 5000) < 0.2 * SPEED  # at the subscriber within 0.2 s wall of the trip
    assert any(s.value == 0.0 and s.t > START + 9000 for _, s in wire_seen)
    # Counters add up: nothing dropped anywhere.
    frames = counters["decoders"]["bridge0"]["frames"]
    assert frames["errors"] == {} and frames["missing_frames"] == 0
    assert counters["decoders"]["gnss0"]["epochs_gated"] == len(sent)
    assert counters["store"]["committed"] == sum(
        v for k, v in counters["pipeline"].items() if k.startswith("samples.")
    )
    assert not [k for k in counters["pipeline"] if k.startswith("drops.")]
    assert saved["decoders.bridge0"]["frames.frames_ok"] == frames["frames_ok"]
    assert saved["ports.gnss0"]["bytes"] == counters["pipeline"]["bytes.gnss0"]


@pytest.mark.timeout(60)
def test_geophone_simulator_on_a_pty_to_pgv_and_event_count(tmp_path: Path) -> None:
    """SYNTHETIC: a 100 Hz geophone burst of 2e6 counts at 6 Hz, 10 simulated minutes at 200 x."""
    speed = 200.0
    amplitude = 2.0e6
    scenario = scenario_from_dict(
        {
            "duration_s": 600,
            "start_utc": START,
            "seismic_rate_hz": 100,
            "seismic_block": 50,
            "seismic_events": [{"t_s": 300, "duration_s": 20, "amplitude_counts": amplitude, "freq_hz": 6.0}],
        }
    )
    device = PtyDevice(scenario, speed=speed)
    cfg = SensorsConfig.model_validate(
        {
            "ports": [{"name": "bridge0", "path": device.port, "kind": "bridge"}],
            "seismic": {"pgv_window_s": 60},
            # Receive-time jitter is multiplied by the compression: allow 0.3 s wall before re-anchoring.
            "device": {"max_skew_s": 0.3 * speed},
        }
    )
    triggers: list[Sample] = []
    store = Store(StoreConfig(path=tmp_path / "store.sqlite"))
    mono0 = time.monotonic()

    def clock() -> float:
        return START + (time.monotonic() - mono0) * speed

    pipeline = Pipeline(cfg, store, clock=clock)
    pipeline.subscribe(
        lambda port, samples: triggers.extend(s for s in samples if s.channel == "seismic.trigger")
    )
    try:
        pipeline.start()
        time.sleep(0.3)
        mono0 = time.monotonic()
        device.start()
        assert device.done.wait(30)
        time.sleep(0.3)
    finally:
        pipeline.stop()
        device.stop()
    try:
        steps = store.read_steps(HOUR_S, START, START + HOUR_S)
        seismic = pipeline.counters()["decoders"]["bridge0"]["seismic"]
    finally:
        store.close()
    want_pgv = amplitude / cfg.seismic.sensitivity_counts_per_m_s * 1000.0  # mm/s at gain 1
    assert steps.values["pgv_mm_s"][0] == pytest.approx(want_pgv, rel=0.1)
    assert steps.values["seismic_events"][0] == 1.0
    on = [s for s in triggers if s.value == 1.0]
    assert len(on) == 1 and on[0].t == pytest.approx(START + 300, abs=10.0)
    assert seismic["samples"] == 600 * 100 and seismic.get("gaps", 0) == 0
