"""A gateway restart loses no rain and counts none twice: the rain-counter baseline is committed to the
store behind the samples it produced and resumed by the next pipeline on the same store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.sensors.pipeline import STATE_SCOPE, Pipeline
from agent.sensors.settings import SensorsConfig
from firmware_bridge.messages import Rain
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import RainStep, Scenario
from firmware_bridge.simulator import generate_frames

MM_PER_TIP = 0.2


def _rain_mm(store: Store) -> float:
    store.flush()
    _t, v = store.read_samples(-np.inf, np.inf, ["rain.mm"]).get("rain.mm", (np.empty(0), np.empty(0)))
    return float(v.sum())


@pytest.mark.faults
def test_restart_mid_storm_loses_no_rain_and_counts_none_twice(tmp_path: Path) -> None:
    scenario = Scenario(
        duration_s=6 * 3600.0,
        rain=(RainStep(0.0, 12.0), RainStep(5 * 3600.0, 0.0)),
        rain_period_s=300.0,
        heartbeat_period_s=600.0,
        seismic_rate_hz=0,
        mm_per_tip=MM_PER_TIP,
    )
    frames = list(generate_frames(scenario))
    # the device's own counter in every RAIN frame, to know the truth independently of the gateway
    counters = [
        f.message.tips
        for _, data in frames
        for f in FrameDecoder().decode(data)
        if isinstance(f.message, Rain)
    ]
    cfg = SensorsConfig.model_validate({"ports": [{"name": "bridge", "path": "/dev/null", "kind": "bridge"}]})
    store_cfg = StoreConfig(path=tmp_path / "store.sqlite")
    start = scenario.start_utc
    down = (2 * 3600.0, 3 * 3600.0)  # the gateway is off for an hour of heavy rain

    store = Store(store_cfg)
    first = Pipeline(cfg, store)
    for t_s, data in frames:
        if t_s < down[0]:
            first.ingest("bridge", start + t_s, data)
    store.flush()
    saved = store.counters()[STATE_SCOPE + "bridge"]
    store.close()  # the gateway goes away; frames sent meanwhile are never received

    store = Store(store_cfg)
    second = Pipeline(cfg, store)
    assert second.decoders["bridge"].state() == saved  # type: ignore[attr-defined]
    for t_s, data in frames:
        if t_s >= down[1]:
            second.ingest("bridge", start + t_s, data)
    total = _rain_mm(store)
    store.close()
    # everything after the first frame (the baseline) is counted exactly once, the outage included
    expected = (counters[-1] - counters[0]) * MM_PER_TIP
    assert expected > 50.0
    assert total == pytest.approx(expected, abs=1e-6)


def test_a_fresh_store_starts_from_a_baseline(tmp_path: Path) -> None:
    cfg = SensorsConfig.model_validate({"ports": [{"name": "bridge", "path": "/dev/null", "kind": "bridge"}]})
    with Store(StoreConfig(path=tmp_path / "s.sqlite")) as store:
        pipe = Pipeline(cfg, store)
        assert pipe.decoders["bridge"].state() is None  # type: ignore[attr-defined]
