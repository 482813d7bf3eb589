"""Sensor faults seen by `agent diagnose` (daemon stopped): each flips only its own check to FAIL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.site import Site, bridge_scenario, diagnose_json, statuses

from firmware_bridge.messages import WireState
from firmware_bridge.scenario import RainStep, WireChange

BRIDGE_CHECKS = "serial.bridge,rain,seismic,wire"


def _site(tmp_path: Path, mosquitto: Any, **scenario: Any) -> Site:
    return Site(tmp_path, mosquitto.host, mosquitto.port, bridge_scenario(**scenario))


@pytest.mark.faults
def test_tripped_wire_fails_only_the_wire_check(tmp_path: Path, mosquitto: Any) -> None:
    site = _site(tmp_path, mosquitto, wire=(WireChange(0.2, WireState.TRIPPED),))
    try:
        rc, checks = diagnose_json(site.config, "--only", BRIDGE_CHECKS, "--listen", "2.5")
    finally:
        site.stop()
    assert rc == 2
    assert statuses(checks, "FAIL") == {"wire.bridge.loop"}, checks
    assert checks["wire.bridge.loop"]["value"] == "loop TRIPPED"
    assert "inspect the slope" in checks["wire.bridge.loop"]["fix"]


@pytest.mark.faults
def test_implausible_rain_counter_fails_only_the_rain_check(tmp_path: Path, mosquitto: Any) -> None:
    # SYNTHETIC: 20000 mm/h of "rain" (a bouncing reed switch) against a gauge limit of 10 mm/h
    site = _site(tmp_path, mosquitto, rain=(RainStep(0.0, 20000.0),))
    site.rewrite(**{"sensors.rain": {"frame_period_s": 1.0, "max_gap_s": 4.0, "max_mm_per_h": 10.0}})
    try:
        rc, checks = diagnose_json(site.config, "--only", BRIDGE_CHECKS, "--listen", "3")
    finally:
        site.stop()
    assert rc == 2, checks
    assert statuses(checks, "FAIL") == {"rain.bridge.counter"}, checks
    assert "implausible" in checks["rain.bridge.counter"]["value"]
