"""Done-when of issue 15: a site configured with `agent-export calibrate rain` output warns through the
real daemon and a real mosquitto.

The thresholds are calibrated (real CLI) on the real Cubatão catalogue. A real storm from it (the four
days up to a landslide day, daily totals from the gauge) is replayed through the firmware-bridge
simulator on a pseudo-terminal into `agent run`; each day's total falls evenly over its 24 hours (the
record is daily: that spread is the replay's assumption, the day totals are the gauge's). The calibrated
level must appear in the retained alert with the predictor, value, threshold and validation figures.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomllib
from helpers.mqtt_checks import kind_of

from agent.demo.harness import SubprocessSite
from agent.demo.scenario import REFERENCE, START_UTC, DemoScenario
from agent.publish.watch import TopicWatcher
from agent.sensors.gnss_sim import QualitySegment, SimConfig, Trajectory
from export.rain.table import read_table
from firmware_bridge.scenario import RainStep, Scenario

DAY = 86400.0
LEVELS = ("advisory", "watch", "warning")
STORM_DAYS = 4  # the landslide day and the three before it
REAL_S = 24.0  # wall seconds for the replay


def _calibrate(tmp_path: Path, cubatao: Path) -> tuple[Path, Path]:
    table, out = tmp_path / "cubatao.csv", tmp_path / "thresholds.toml"
    run = [sys.executable, "-m", "export.cli"]
    imp = subprocess.run(
        [
            *run,
            "data",
            "import",
            "rain-catalogue",
            "--rain",
            str(cubatao / "raingauge-hb.csv"),
            "--landslides",
            str(cubatao / "landslides.csv"),
            "--out",
            str(table),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imp.returncode == 0, imp.stderr
    # Short windows only (the replay holds four days) and no pairs: the test runs in seconds.
    cal = subprocess.run(
        [
            *run,
            "calibrate",
            "rain",
            str(table),
            "--out",
            str(out),
            "--site",
            "demo-site",
            "--no-pairs",
            "--predictors",
            "rain_1d,rain_2d,rain_3d,ante_1d",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cal.returncode == 0, cal.stderr
    return table, out


def _storm(table_path: Path, cal: dict[str, Any]) -> tuple[int, list[float], int]:
    """The landslide day reaching the highest calibrated level: its index, day totals and level."""
    t = read_table(table_path)
    rules = [(k + 1, cal[lv]) for k, lv in enumerate(LEVELS) if isinstance(cal.get(lv), dict)]
    best: tuple[int, float, int] | None = None
    for day in np.flatnonzero(t.event & t.usable):
        level = max((k for k, r in rules if t.predictors[r["predictor"]][day] >= r["threshold"]), default=0)
        value = float(t.predictors["rain_3d"][day])
        if best is None or (level, value) > (best[0], best[1]):
            best = (level, value, int(day))
    assert best is not None and best[0] >= 1
    storm = best[2]
    return storm, [float(x) for x in t.rain_mm[storm - STORM_DAYS + 1 : storm + 1]], best[0]


def _scenario(day_mm: list[float]) -> DemoScenario:
    days = STORM_DAYS + 1.0
    rain = (
        *tuple(RainStep(k * DAY, mm / 24.0) for k, mm in enumerate(day_mm)),
        RainStep(STORM_DAYS * DAY, 0.0),
    )
    bridge = Scenario(
        duration_s=days * DAY,
        start_utc=START_UTC,
        seed=5,
        rain=rain,
        rain_period_s=900.0,
        rain_check_s=300.0,
        heartbeat_period_s=1800.0,
        seismic_rate_hz=0,
    )
    still = Trajectory(t_s=(0.0, days * DAY), e_mm=(0.0, 0.0), n_mm=(0.0, 0.0), u_mm=(0.0, 0.0))
    gnss = SimConfig(
        reference=REFERENCE,
        trajectory=still,
        start_utc=START_UTC,
        rate_hz=1 / 900.0,
        duration_s=days * DAY,
        noise_mm=(0.5, 0.5, 1.0),
        quality=(QualitySegment(0.0),),
        emit=("NAV-PVT", "NAV-HPPOSLLH"),
        seed=5,
    )
    return DemoScenario(bridge, gnss, days, START_UTC + 10 * days * DAY)


def test_calibrated_site_warns_through_the_real_daemon_and_broker(
    mosquitto, tmp_path: Path, shared_data: Path
) -> None:
    table, thresholds = _calibrate(tmp_path, shared_data / "cubatao-rain-landslides")
    cal = tomllib.loads(thresholds.read_text())["warning"]["sites"]["demo-site"]["rainfall"]["calibrated"]
    index, day_mm, want = _storm(table, cal)
    rule = cal[LEVELS[want - 1]]
    scenario = _scenario(day_mm)
    speed = scenario.days * DAY / REAL_S
    site = SubprocessSite(scenario, tmp_path / "site", mosquitto.host, mosquitto.port, speed)
    # The operator's step: append the calibration output to agent.toml as it is.
    site.config_path.write_text(
        site.config_path.read_text() + "\n" + thresholds.read_text(), encoding="utf-8"
    )
    watcher = TopicWatcher(mosquitto.host, mosquitto.port, "lews/v1/#").start()

    def reached(ms: list[Any]) -> bool:
        return any(kind_of(m.topic) == "alert" and _rain(m.json()).get("level", 0) >= want for m in ms)

    try:
        site.start()
        deadline = time.monotonic() + REAL_S + 60
        while not reached(watcher.snapshot()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        code = site.stop()
        watcher.stop()
    why = f"storm ending {table} row {index}, day totals {day_mm} mm; log {site.workdir / 'daemon.log'}"
    assert code == 0, why
    alerts = [m.json() for m in watcher.snapshot() if kind_of(m.topic) == "alert"]
    top = [a for a in alerts if _rain(a).get("level", 0) >= want]
    assert top, (why, [(_rain(a).get("level"), _rain(a).get("reason")) for a in alerts][-5:])
    first = top[0]
    assert first["level"] >= want and "rainfall" in first["explanation"]["contributing"]
    src = _rain(first)
    ev = src["evidence"]
    assert src["level"] == want and ev["rule"] == "calibrated"
    assert ev["predictor"] == rule["predictor"] and ev["threshold"] == rule["threshold"]
    assert ev["value"] >= rule["threshold"] and ev["validation"]["method"] == "leave-one-event-out"
    assert ev["validation"]["pod"] == rule["validation"]["pod"]
    assert 0.0 <= ev["probability"] <= 1.0
    assert f"{LEVELS[want - 1]} threshold" in src["reason"] and rule["predictor"] in src["reason"]
    assert "false-alarm days/yr" in src["reason"]


def _rain(alert: dict[str, Any]) -> dict[str, Any]:
    for s in alert.get("explanation", {}).get("sources", []):
        if s.get("source") == "rainfall":
            return dict(s)
    return {}
