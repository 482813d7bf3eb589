"""Time you can trust: with the system clock wrong by up to a day either way, GNSS epochs are kept
and stamped with the receiver's time, the other ports' samples with the corrected time, and the
daemon's status says the clock is wrong (issue 13: every epoch was dropped as implausible_time)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.sensors.clock import ClockDiscipline
from agent.sensors.gnss import Reference
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate
from agent.sensors.pipeline import Pipeline
from agent.sensors.settings import SensorsConfig
from firmware_bridge.codec import FrameEncoder
from firmware_bridge.messages import Wire, WireState

REPO = Path(__file__).resolve().parent.parent
REF = Reference(46.05, 14.50, 400.0)
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the receiver's (true) time
OFFSETS = (-DAY, -6 * 3600.0, -3601.0, -301.0, -30.0, 0.0, 30.0, 301.0, 3601.0, 6 * 3600.0, DAY)


def _gnss_epochs(start: float, n: int, emit: tuple[str, ...] = ("NAV-PVT", "GGA")) -> list[Any]:
    traj = Trajectory((0.0, 1e6), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0))
    cfg = SimConfig(REF, traj, start_utc=start, duration_s=float(n), emit=emit, seed=1)
    return list(simulate(cfg))


def _sensors() -> SensorsConfig:
    return SensorsConfig.model_validate(
        {
            "ports": [
                {"name": "gnss", "path": "/dev/null-gnss", "kind": "gnss"},
                {"name": "bridge", "path": "/dev/null-bridge", "kind": "bridge"},
            ],
            "gnss": {"reference": {"lat": REF.lat, "lon": REF.lon, "h_m": REF.h_m}},
        }
    )


class Wall:
    """The system clock: true time + a fixed error (what a Jetson without RTC boots with)."""

    def __init__(self, error_s: float) -> None:
        self.error_s, self.true = error_s, T0

    def __call__(self) -> float:
        return self.true + self.error_s


def test_the_discipline_reports_and_corrects_only_a_wrong_clock() -> None:
    wall = Wall(DAY)
    clock = ClockDiscipline(wall)
    assert clock.offset_s is None and not clock.is_wrong and clock.now() == wall()
    for k in range(5):
        clock.observe(T0 + k - 0.3, wall() + k)  # 0.3 s serial latency
    assert clock.is_wrong and clock.offset_s == pytest.approx(-DAY - 0.3)
    assert clock.now() == pytest.approx(T0 - 0.3)
    status = clock.status()
    assert status["system_clock_wrong"] is True and status["source"] == "gnss"
    good = ClockDiscipline(Wall(0.0))
    for k in range(5):
        good.observe(T0 + k - 0.3, T0 + k)
    assert not good.is_wrong and good.correction_s == 0.0  # latency jitter never nudges a good clock
    assert good.status()["system_clock_wrong"] is False
    # one odd message does not move the median
    good.observe(T0 + 5 + DAY, T0 + 5)
    assert not good.is_wrong
    off = ClockDiscipline(Wall(DAY), enabled=False)
    off.observe(T0, T0 + DAY)
    assert off.correction_s == 0.0 and off.status()["system_clock_wrong"] is None


@pytest.mark.parametrize("error_s", OFFSETS)
def test_gnss_epochs_are_kept_and_every_port_stamped_right_whatever_the_system_clock(
    error_s: float,
) -> None:
    wall = Wall(error_s)
    pipe = Pipeline(_sensors(), None, clock=wall)
    got: list[Any] = []
    pipe.subscribe(lambda port, samples: got.extend((port, s) for s in samples))
    encoder = FrameEncoder(boot_id=7)
    epochs = _gnss_epochs(T0, 30)
    for k, ep in enumerate(epochs):
        wall.true = ep.t + 0.2  # the bytes arrive 0.2 s after the epoch
        pipe.ingest("gnss", wall(), ep.data)
        if k == 20:  # the wire trips: stamped at receipt, by the (corrected) gateway clock
            frame = encoder.encode(Wire(WireState.TRIPPED, 1, 100, 0))
            pipe.ingest("bridge", wall(), frame)
    pipe.finish()  # the last epoch is complete only when the stream ends
    counters = pipe.counters()
    drops = {k: v for k, v in counters["pipeline"].items() if k.startswith("drops.")}
    assert drops == {}, drops  # nothing dropped as implausible_time, whatever the error
    e = [(s.t, s.value) for port, s in got if s.channel == "gnss.e_mm"]
    assert len(e) == 30
    assert [t for t, _ in e] == pytest.approx([ep.t for ep in epochs], abs=1e-3)  # the receiver's time
    wire = [s for port, s in got if s.channel == "wire.state"]
    assert len(wire) == 1
    # a wrong clock is corrected (to within the latency); a right one (<= 5 s off) is left alone
    expected = epochs[20].t + 0.2 + (error_s if abs(error_s) <= 5.0 else 0.0)
    assert wire[0].t == pytest.approx(expected, abs=0.5), wire[0].t - expected
    assert pipe.time.is_wrong == (abs(error_s) > 5.0)
    if abs(error_s) > 5.0:
        assert pipe.time.offset_s == pytest.approx(-error_s - 0.2, abs=0.05)
        assert counters["pipeline"]["clock.stamped_corrected"] == 1
    assert counters["pipeline"]["clock.stamped_gnss"] >= 30


def _daemon_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "site": {"site": "clock-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state")},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "sensors": _sensors().model_dump(mode="json"),
        "inference": {
            "bundle_dir": str(tmp_path / "no-bundle"),
            "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub"),
        },
        "mqtt": {"port": 1, "outbox": {"path": str(tmp_path / "outbox.sqlite")}},
    }


@pytest.mark.parametrize("error_s", (-DAY, DAY))
def test_the_daemon_status_says_the_clock_is_wrong_and_its_time_is_corrected(
    tmp_path: Path, error_s: float
) -> None:
    true_now = time.time()
    daemon = Daemon(config_from_dict(_daemon_config(tmp_path)), clock=lambda: time.time() + error_s)
    try:
        assert daemon.status()["clock"]["system_clock_wrong"] is False  # no GNSS time yet: unknown
        for ep in _gnss_epochs(float(np.floor(true_now)) - 10.0, 10):
            daemon.pipeline.ingest("gnss", daemon.timekeeper.raw(), ep.data)
        daemon.pipeline.finish()
        status = daemon.status()
        clock = status["clock"]
        assert clock["system_clock_wrong"] is True and clock["source"] == "gnss"
        assert clock["offset_s"] == pytest.approx(-error_s, abs=15.0)
        assert status["time"] == pytest.approx(time.time(), abs=15.0)  # the daemon's time is GNSS time
        daemon.store.flush(30)
        stored = daemon.store.read_samples(true_now - 60, true_now + 60, ["gnss.e_mm"])["gnss.e_mm"][0]
        assert stored.size == 10  # kept, at the receiver's time
    finally:
        daemon.store.close()


def test_receiver_date_bugs_are_not_taken_for_a_wrong_system_clock() -> None:
    rollover = 1024 * 7 * DAY  # GPS week rollover: valid flags, a date 19.6 years back
    clock = ClockDiscipline(Wall(0.0))
    for k in range(5):
        clock.observe(T0 + k - rollover, T0 + k)
    assert clock.offset_s is None and clock.status()["implausible_gnss_times"] == 5
    booted_1970 = ClockDiscipline(lambda: 1000.0)  # no RTC, no network: the clock starts at 1970
    booted_1970.observe(T0, 1000.0)
    assert booted_1970.is_wrong and booted_1970.now() == pytest.approx(T0)


def test_set_clock_is_sent_at_start_and_the_device_clock_follows(tmp_path: Path) -> None:
    from firmware_bridge.pty_device import PtyDevice
    from firmware_bridge.scenario import Scenario

    speed = 60.0
    scenario = Scenario(duration_s=3600.0, seismic_rate_hz=0, clock_set=False, rain_period_s=60.0)
    with PtyDevice(scenario, speed=speed) as device:
        t0 = time.monotonic()

        def sim_clock() -> float:  # the gateway's clock, on the device's (compressed) time line
            return scenario.start_utc + (time.monotonic() - t0) * speed

        cfg = SensorsConfig.model_validate(
            {"ports": [{"name": "bridge", "path": device.port, "kind": "bridge"}]}
        )
        pipe = Pipeline(cfg, None, clock=sim_clock, set_device_clock=True)
        pipe.start()
        try:
            decoder: Any = pipe.decoders["bridge"]
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline and not (
                decoder.device.counters.acks >= 1 and decoder.device.clock_ok(scenario_skew(speed))
            ):
                time.sleep(0.05)
            sent = dict(pipe.device_clock.counters)
            ok = decoder.device.clock_ok(scenario_skew(speed))
        finally:
            pipe.stop()
    assert sent.get("sent.start", 0) == 1, sent
    assert decoder.device.counters.acks >= 1 and decoder.device.counters.nacks == 0
    assert ok, decoder.device.clock_skew_s  # RAIN frames now carry the time the agent set


def scenario_skew(speed: float) -> float:
    """The device-clock tolerance at this time compression: 0.5 real seconds of latency."""
    return 0.5 * speed


def test_diagnose_fails_system_clock_when_the_daemon_found_it_wrong(tmp_path: Path) -> None:
    import json

    from agent.diagnose import checks_system
    from agent.diagnose.model import Context, Status

    cfg = config_from_dict(_daemon_config(tmp_path))
    wall = Wall(DAY)
    discipline = ClockDiscipline(wall)
    discipline.observe(T0, wall())
    state = tmp_path / "state"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"time": time.time(), "clock": discipline.status()}))
    res = checks_system.clock(Context(cfg))
    assert res.status == Status.FAIL and "+86400 s off GNSS time" in res.value, res
