"""Incremental step refresh of the pipeline: only what new samples touched, the open day throttled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.features.aggregate import DAY_S, HOUR_S
from agent.features.samples import Sample
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.sensors.pipeline import Pipeline
from agent.sensors.settings import SensorsConfig

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _rain(t0: float, hours: int, mm: float = 0.2) -> list[Sample]:
    return [Sample(t0 + 60.0 * k, "rain.mm", mm) for k in range(1, hours * 60 + 1)]


def test_refresh_recomputes_only_touched_steps_and_throttles_the_open_day(tmp_path: Path) -> None:
    with Store(StoreConfig(path=tmp_path / "s.sqlite")) as store:
        pipe = Pipeline(SensorsConfig(), store, daily_every_s=3600.0)
        pipe.emit("bridge0", _rain(T0, 30))  # frames 1..1439 in day 0, 1440..1800 in day 1
        tables = {t.step_s: t for t in pipe.refresh_steps()}
        assert len(tables[DAY_S]) == 2 and len(tables[HOUR_S]) == 31  # incl. the hour at 06:00 of day 1
        day = store.read_steps(DAY_S, T0, T0 + 2 * DAY_S)
        np.testing.assert_allclose(day.values["rain_mm"], [1439 * 0.2, 361 * 0.2], atol=1e-9)
        # One more hour of day 1: hourly steps from it on; the open day waits (computed < 1 h ago).
        pipe.emit("bridge0", [Sample(T0 + DAY_S + 6.5 * HOUR_S, "rain.mm", 1.0)])
        tables = {t.step_s: t for t in pipe.refresh_steps()}
        assert set(tables) == {HOUR_S} and list(tables[HOUR_S].times) == [T0 + DAY_S + 6 * HOUR_S]
        # A late sample for the closed day 0: that day is recomputed (the open day with it).
        pipe.emit("bridge0", [Sample(T0 + 12 * HOUR_S + 30, "rain.mm", 5.0)])
        tables = {t.step_s: t for t in pipe.refresh_steps()}
        assert list(tables[DAY_S].times) == [T0, T0 + DAY_S]
        day = store.read_steps(DAY_S, T0, T0 + 2 * DAY_S)
        assert day.values["rain_mm"][0] == pytest.approx(1439 * 0.2 + 5.0)
        assert day.values["rain_mm"][1] == pytest.approx(361 * 0.2 + 1.0)
        # Nothing new: nothing recomputed; final forces the open day.
        assert pipe.refresh_steps() == []
        pipe.emit("bridge0", [Sample(T0 + DAY_S + 7 * HOUR_S, "rain.mm", 2.0)])
        tables = {t.step_s: t for t in pipe.refresh_steps(final=True)}
        assert set(tables) == {DAY_S, HOUR_S}
        assert store.read_steps(DAY_S, T0 + DAY_S, T0 + 2 * DAY_S).values["rain_mm"][0] == pytest.approx(
            361 * 0.2 + 3.0
        )


def test_no_samples_no_steps(tmp_path: Path) -> None:
    with Store(StoreConfig(path=tmp_path / "s.sqlite")) as store:
        pipe = Pipeline(SensorsConfig(), store)
        assert pipe.refresh_steps() == [] and pipe.refresh_steps(start=T0, end=T0 + DAY_S) != []
