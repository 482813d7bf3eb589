"""SYNTHETIC receiver on a pseudo-terminal -> pyserial bulk reads -> GnssProcessor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serial

from agent.errors import ConfigError
from agent.sensors.gnss import GnssConfig, GnssProcessor, Reference, solve_steps
from agent.sensors.gnss_sim import (
    SimConfig,
    SimEpoch,
    Trajectory,
    sim_config_from_mapping,
    simulate,
    write_to_fd,
)

REF = Reference(46.05, 14.50, 420.0)
RAMP = Trajectory(t_s=(0.0, 40.0), e_mm=(0.0, 40.0), n_mm=(0.0, -20.0), u_mm=(0.0, 8.0))


def test_gnss_sim_on_pty_equals_direct_bytes() -> None:
    sim = SimConfig(REF, RAMP, rate_hz=10.0, duration_s=40.0, dropout_prob=0.02, seed=21)
    master, slave = os.openpty()
    port = serial.Serial(os.ttyname(slave), baudrate=115200, timeout=0.05)
    sent: list[SimEpoch] = []
    writer = threading.Thread(target=lambda: sent.extend(write_to_fd(master, sim, speed=40.0)))
    proc = GnssProcessor(GnssConfig(REF), keep_epochs=True)
    samples = []
    reads = 0
    t0 = time.monotonic()
    try:
        writer.start()
        idle_since = None
        while True:
            data = port.read(max(1, port.in_waiting))  # bulk: everything that is waiting
            if data:
                reads += 1
                samples += proc.feed(data)
                idle_since = None
            elif not writer.is_alive():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.3:
                    break
        samples += proc.finish()
    finally:
        writer.join(5)
        port.close()
        os.close(master)
        os.close(slave)
    elapsed = time.monotonic() - t0
    assert 0.9 < elapsed < 5.0  # paced at 40x: 40 s of data in about 1 s
    direct = GnssProcessor(GnssConfig(REF))
    expected = direct.feed(b"".join(e.data for e in sent)) + direct.finish()
    assert samples == expected
    assert proc.epochs_gated == sum(not e.dropped for e in sent) > 380
    assert reads < proc.framer.counters.frames  # read in bulk, not frame by frame
    # gated 10-s medians follow the ramp (synthetic truth at the middle of each step)
    for step in solve_steps(proc.epochs, 10.0, t0=sim.start_utc):
        true = RAMP.at(step.t_start - sim.start_utc + 4.95)
        assert np.all(np.abs(np.asarray(step.median_mm) - true) < [3.0, 3.0, 5.0])


def test_gnss_sim_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="cannot emit"):
        list(simulate(SimConfig(REF, RAMP, emit=("NAV-SOL",))))
    with pytest.raises(ConfigError, match="increase"):
        Trajectory(t_s=(0.0, 0.0), e_mm=(0.0, 1.0), n_mm=(0.0, 1.0), u_mm=(0.0, 1.0))
    with pytest.raises(ConfigError, match="positive"):
        list(simulate(SimConfig(REF, RAMP, rate_hz=0.0)))


def test_gnss_sim_scenario_process_on_pty(tmp_path: Path) -> None:
    """`python -m agent.sensors.gnss_sim SCENARIO --speed 50` prints a pty path; the agent side reads it."""
    scenario = {
        "reference": {"lat": 46.05, "lon": 14.5, "h_m": 420.0},
        "trajectory": {"t_s": [0, 30], "e_mm": [0, 30], "n_mm": [0, 0], "u_mm": [0, -6]},
        "quality": [{"t_from_s": 0}, {"t_from_s": 20, "carrier": 1}],
        "duration_s": 30,
        "rate_hz": 2,
        "seed": 3,
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(scenario))
    cfg = sim_config_from_mapping(scenario)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.sensors.gnss_sim", str(path), "--speed", "50", "--linger-s", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = serial.Serial(proc.stdout.readline().strip(), timeout=0.3)
        gnss = GnssProcessor(GnssConfig(cfg.reference), keep_epochs=True)
        while data := port.read(max(1, port.in_waiting)):
            gnss.feed(data)
        gnss.finish()
        port.close()
    finally:
        proc.wait(10)
    assert proc.returncode == 0
    assert gnss.epochs_total == 60 and gnss.epochs_gated == 40 and gnss.rejected["carrier"] == 20
    with pytest.raises(ConfigError, match="malformed"):
        sim_config_from_mapping({"trajectory": {}})
