"""Simulated device -> frames -> BridgeIngest -> Samples -> hourly steps: the steps are what the device
meant (uses the step aggregation of agent/features/aggregate.py, as the daemon and training do)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features.aggregate import aggregate, group_samples
from agent.features.samples import Sample
from agent.sensors.bridge_device import BridgeIngest
from firmware_bridge.messages import WireState
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
    ingest = BridgeIngest()
    samples: list[Sample] = []
    for t_s, data in model.advance(scenario.duration_s):
        for out in ingest.feed(scenario.start_utc + t_s, data):
            samples.extend(out.samples)
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
