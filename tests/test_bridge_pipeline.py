"""Simulated device -> bytes -> BridgeDecoder (the live and replay path of a bridge port) -> Samples ->
hourly steps: the steps are what the device meant (uses the step aggregation of
agent/features/aggregate.py, as the daemon and training do), with the gauge and clock limits the
configuration gives."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features.aggregate import aggregate, group_samples
from agent.features.samples import Sample
from agent.sensors.decoders import BridgeDecoder, make_decoder
from agent.sensors.settings import SensorsConfig, SerialPortConfig
from firmware_bridge.codec import encode_frame
from firmware_bridge.messages import Rain, WireState
from firmware_bridge.scenario import Outage, RainStep, Scenario, WireChange
from firmware_bridge.simulator import DeviceModel

HOUR = 3600


def test_hourly_steps_equal_the_scenario() -> None:
    scenario = Scenario(
        duration_s=6 * HOUR,
        rain=(RainStep(0, 0.0), RainStep(1 * HOUR, 4.0), RainStep(2 * HOUR, 18.5), RainStep(4 * HOUR, 0.0)),
        wire=(WireChange(2.5 * HOUR, WireState.TRIPPED),),
        outages=(Outage(3 * HOUR + 600, 900),),  # 15 min without frames inside hour 3
        seismic_rate_hz=0,
        supply_mv=12_150,
        temp_c=7.5,
    )
    model = DeviceModel(scenario)
    decoder = make_decoder(SerialPortConfig(name="bridge", path="/dev/null", kind="bridge"), SensorsConfig())
    assert isinstance(decoder, BridgeDecoder)
    samples: list[Sample] = []
    for t_s, data in model.advance(scenario.duration_s):
        samples.extend(decoder.feed(scenario.start_utc + t_s, data))
    table = aggregate(group_samples(samples), HOUR, scenario.start_utc, scenario.start_utc + 6 * HOUR)
    assert table.times[0] == scenario.start_utc and len(table) == 6
    rain = table.values["rain_mm"]
    for h in range(6):
        physical = scenario.rain_mm_until((h + 1) * HOUR) - scenario.rain_mm_until(h * HOUR)
        # A tip is reported within 1 s, so at most one 0.2 mm tip moves across an hour boundary.
        assert rain[h] == pytest.approx(physical, abs=0.2 + 1e-9), h
    assert rain.sum() == pytest.approx(model.truth.rain_mm_delivered(0.2), abs=1e-9)
    # Hour 3 holds the outage: its rain is still complete (cumulative counter) and its frame coverage
    # shows the silence; the other hours are fully covered.
    assert rain[3] == pytest.approx(18.5, abs=0.2)
    assert table.completeness["rain_mm"][3] < 1.0
    assert np.all(table.completeness["rain_mm"][[0, 1, 2, 4]] == 1.0)
    assert list(table.values["wire_state"]) == [0, 0, 1, 1, 1, 1]
    assert set(table.values["supply_v"]) == {12.15} and set(table.values["temp_c"]) == {7.5}
    assert table.completeness["supply_v"][0] == 1.0 and table.completeness["supply_v"][3] < 1.0


def _rain_total(cfg: SensorsConfig, scenario: Scenario) -> float:
    decoder = BridgeDecoder(cfg, "bridge")
    total = 0.0
    for t_s, data in DeviceModel(scenario).advance(scenario.duration_s):
        total += sum(s.value for s in decoder.feed(scenario.start_utc + t_s, data) if s.channel == "rain.mm")
    return total


def test_rain_depth_per_tip_comes_from_the_configuration() -> None:
    scenario = Scenario(
        duration_s=2 * HOUR, mm_per_tip=0.5, rain=(RainStep(0, 0.0), RainStep(600, 10.0)), seismic_rate_hz=0
    )
    truth = DeviceModel(scenario)
    list(truth.advance(scenario.duration_s))
    tips = truth.truth.rain_mm_delivered(1.0)
    assert tips > 10
    gauge = SensorsConfig.model_validate({"rain": {"mm_per_tip": 0.5}})
    assert _rain_total(gauge, scenario) == pytest.approx(tips * 0.5, abs=1e-9)
    # The same bytes read with another calibration: the configured depth, not a built-in 0.2 mm.
    other = SensorsConfig.model_validate({"rain": {"mm_per_tip": 0.25}})
    assert _rain_total(other, scenario) == pytest.approx(tips * 0.25, abs=1e-9)


def test_clock_skew_limit_comes_from_the_configuration() -> None:
    t = 1_767_225_600.0
    frame = encode_frame(Rain(tips=0, uptime_s=1, device_time_ms=int((t + 5.0) * 1000)), seq=0, boot_id=7)
    strict = BridgeDecoder(SensorsConfig(), "bridge")  # default sensors.device.max_skew_s = 2 s
    strict.feed(t, frame)
    assert strict.device.clock_skew_s == pytest.approx(5.0, abs=1e-3)
    assert strict.device.clock_ok() is False
    lenient = BridgeDecoder(SensorsConfig.model_validate({"device": {"max_skew_s": 10.0}}), "bridge")
    lenient.feed(t, frame)
    assert lenient.device.clock_ok() is True
