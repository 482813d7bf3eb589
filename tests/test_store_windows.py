"""Feature windows read from a real SQLite store, built by the shared displacement feature code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.errors import BundleSchemaError, FeatureWindowError
from agent.features.aggregate import DAY_S, Expectations
from agent.features.samples import Sample
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.features.windows import feature_window, lookback_steps, site_series

T0 = 1_700_006_400.0  # 2023-11-15T00:00:00Z
DAYS = 45
EXPECT = Expectations(gnss_period_s=3600.0, rain_max_gap_s=7200.0)


def _meta(**kw: Any) -> dict[str, Any]:
    names = ["velocity_mm", "rain_mm", "rain_sum_3", "rain_sum_7"]
    meta: dict[str, Any] = {
        "feature_names": names,
        "window": 7,
        "horizon_steps": 1,
        "projection": {"disp_e_mm": 1.0},
        "norm_mean": [0.0] * len(names),
        "norm_std": [1.0] * len(names),
        "thresholds_mm": [5.0],
        "primary_threshold_mm": 5.0,
        "conformal_half_width_mm": 1.0,
        "conformal_nominal": 0.9,
    }
    meta.update(kw)
    return meta


def _site_samples(gnss_days: int = DAYS) -> list[Sample]:
    """SYNTHETIC: east creeps 2 mm/day (hourly epochs), rain 0.2 mm per hour on day d if d % 3 == 0."""
    out: list[Sample] = []
    for h in range(DAYS * 24):
        t = T0 + 3600.0 * h + 1800.0
        day = h // 24
        if day < gnss_days:
            out.append(Sample(t, "gnss.e_mm", 2.0 * (t - T0) / DAY_S))
            out.append(Sample(t, "gnss.n_mm", 0.0))
        out.append(Sample(t, "rain.mm", 0.2 if day % 3 == 0 else 0.0))
    return out


def _store(tmp_path: Path, samples: list[Sample]) -> Store:
    store = Store(StoreConfig(path=tmp_path / "s.sqlite"))
    store.put(samples)
    store.flush()
    store.refresh_steps(DAY_S, T0, T0 + DAYS * DAY_S, EXPECT)
    store.flush()
    return store


def test_window_values_come_from_the_store_steps(tmp_path: Path) -> None:
    with _store(tmp_path, _site_samples()) as store:
        end = T0 + DAYS * DAY_S + 10  # the day that just started is not used
        win = feature_window(store, _meta(), end=end)
        assert win.x.shape == (1, 4, 7) and win.x.dtype == np.float32
        np.testing.assert_allclose(win.x[0, 0], 2.0, atol=1e-4)  # velocity mm/day
        days = np.arange(DAYS - 7, DAYS)
        rain = np.where(days % 3 == 0, 24 * 0.2, 0.0)
        np.testing.assert_allclose(win.x[0, 1], rain, atol=1e-5)
        sum3 = [sum(24 * 0.2 for k in range(d - 2, d + 1) if k % 3 == 0) for d in days]
        np.testing.assert_allclose(win.x[0, 2], sum3, atol=1e-4)
        # Every input is complete except the last half hour of rain: no frame has reported it yet.
        assert win.completeness == pytest.approx(1.0 - 1800.0 / DAY_S / 7)
        assert win.last_step == T0 + (DAYS - 1) * DAY_S
        assert len(win.series) == lookback_steps(_meta())


def test_incomplete_window_is_refused_with_its_completeness(tmp_path: Path) -> None:
    # GNSS stops 5 days before the end: 2 of 7 days have positions.
    with _store(tmp_path, _site_samples(gnss_days=DAYS - 5)) as store:
        with pytest.raises(FeatureWindowError, match="complete") as info:
            feature_window(store, _meta(), end=T0 + DAYS * DAY_S)
        assert info.value.completeness == pytest.approx(2 / 7)
        win = feature_window(store, _meta(), end=T0 + DAYS * DAY_S, min_completeness=0.2)
        assert list(win.step_completeness) == pytest.approx([1, 1, 0, 0, 0, 0, 0])


def test_unknown_feature_is_refused(tmp_path: Path) -> None:
    with _store(tmp_path, _site_samples()) as store:
        meta = _meta(feature_names=["velocity_mm", "soil_moisture"], norm_mean=[0, 0], norm_std=[1, 1])
        with pytest.raises(BundleSchemaError, match="soil_moisture"):
            feature_window(store, meta, end=T0 + DAYS * DAY_S)


def test_empty_store_gives_zero_completeness(tmp_path: Path) -> None:
    with Store(StoreConfig(path=tmp_path / "s.sqlite")) as store:
        with pytest.raises(FeatureWindowError) as info:
            feature_window(store, _meta(), end=T0)
        assert info.value.completeness == 0.0


def test_site_series_conversion_carries_completeness(tmp_path: Path) -> None:
    with _store(tmp_path, _site_samples()) as store:
        table = store.read_steps(DAY_S, T0, T0 + 3 * DAY_S)
        series = site_series(table, station="SYNTH")
        assert series.step == "P1D" and series.station == "SYNTH"
        np.testing.assert_allclose(series.columns["rain_mm"], [4.8, 0.0, 0.0], atol=1e-9)
        np.testing.assert_allclose(series.columns["completeness"], [1.0, 1.0, 1.0])
