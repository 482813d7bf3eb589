"""Aggregation of samples into daily/hourly site-series steps (pure functions, synthetic samples)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.features.aggregate import (
    DAY_S,
    HOUR_S,
    SITE_SERIES_COLUMNS,
    Expectations,
    aggregate,
    aggregate_samples,
    group_samples,
    step_start,
)
from agent.features.samples import Sample

T0 = 1_700_006_400.0  # 2023-11-15T00:00:00Z, a UTC midnight


def test_t0_is_a_utc_midnight() -> None:
    assert step_start(T0 + 5, DAY_S) == T0
    assert step_start(T0 - 1, DAY_S) == T0 - DAY_S
    assert step_start(T0 + HOUR_S + 1, HOUR_S) == T0 + HOUR_S


def test_gnss_median_spread_and_count_completeness() -> None:
    rng = np.random.default_rng(1)
    # 1 Hz epochs for the first half of hour 0, full hour 1; east = 10 mm + noise, one outlier.
    ts = np.concatenate([T0 + np.arange(1800.0), T0 + HOUR_S + np.arange(3600.0)])
    e = 10.0 + rng.normal(0, 2.0, ts.size)
    e[5] = 5000.0  # a wild epoch: the median must not move
    samples = [Sample(float(t), "gnss.e_mm", float(v)) for t, v in zip(ts, e, strict=True)]
    table = aggregate_samples(samples, HOUR_S, Expectations(gnss_period_s=1.0))
    assert list(table.times) == [T0, T0 + HOUR_S]
    assert table.values["disp_e_mm"] == pytest.approx([10.0, 10.0], abs=0.2)
    assert table.values["disp_e_spread_mm"] == pytest.approx([2.0, 2.0], rel=0.15)
    assert list(table.counts["disp_e_mm"]) == [1800, 3600]
    assert table.completeness["disp_e_mm"] == pytest.approx([0.5, 1.0])
    assert list(table.values["gnss_epochs"]) == [1800.0, 3600.0]
    # No north samples at all: NaN value, completeness 0.
    assert np.isnan(table.values["disp_n_mm"]).all()
    assert list(table.completeness["disp_n_mm"]) == [0.0, 0.0]


def test_rain_sum_exact_and_coverage_with_a_gap() -> None:
    # A RAIN frame every 60 s over one day; 0.2 mm in some frames; a 2 h silence (bridge away).
    ts = [T0 + 60.0 * k for k in range(1, 1441)]
    gap = set(range(600, 720))  # frames 600..719 missing -> a 7260 s interval, longer than max_gap
    samples = []
    expected = 0.0
    for k, t in enumerate(ts, start=1):
        if k in gap:
            continue
        v = 0.2 * (k % 7 == 0) + 0.4 * (k % 50 == 0)
        expected += v
        samples.append(Sample(t, "rain.mm", v))
    table = aggregate_samples(samples, DAY_S, Expectations(rain_max_gap_s=300.0))
    assert len(table) == 2  # the last frame sits exactly on the next midnight
    total = float(np.nansum(table.values["rain_mm"]))
    assert total == pytest.approx(expected, abs=1e-9)
    # Coverage of day 0: only the 7260 s silence is missing (the first interval starts one max gap
    # before frame 1 and clips to midnight; the last one is the frame that falls on the next midnight).
    assert table.completeness["rain_mm"][0] == pytest.approx((DAY_S - 7260.0) / DAY_S, abs=1e-12)
    assert table.values["rain_mm"][1] == 0.0 and table.counts["rain_mm"][1] == 1


def test_wire_state_is_carried_into_steps_without_frames() -> None:
    samples = [
        Sample(T0 + 10, "wire.state", 0.0),
        Sample(T0 + HOUR_S + 100, "wire.state", 1.0),  # tripped in hour 1
        Sample(T0 + 3 * HOUR_S + 5, "wire.state", 0.0),  # reset in hour 3
    ]
    table = aggregate_samples(samples, HOUR_S)
    assert list(table.values["wire_state"]) == [0.0, 1.0, 1.0, 1.0]


def test_seismic_events_zero_only_when_stream_present() -> None:
    samples = [Sample(T0 + 60.0 * k, "seismic.pgv_mm_s", 0.01 * k) for k in range(60)]
    samples += [Sample(T0 + 100, "seismic.trigger", 1.0), Sample(T0 + 110, "seismic.trigger", 0.0)]
    samples += [Sample(T0 + 200, "seismic.trigger", 1.0)]
    samples += [Sample(T0 + 2 * HOUR_S + 1, "device.supply_v", 12.1)]  # hour 2: no seismic stream
    table = aggregate_samples(samples, HOUR_S, Expectations(seismic_period_s=60.0))
    assert table.values["seismic_events"][0] == 2.0
    assert table.values["pgv_mm_s"][0] == pytest.approx(0.59)
    assert table.completeness["pgv_mm_s"][0] == pytest.approx(1.0)
    assert np.isnan(table.values["seismic_events"][1]) and np.isnan(table.values["seismic_events"][2])
    assert table.values["supply_v"][2] == pytest.approx(12.1)


def test_unknown_channels_are_ignored_and_empty_input_gives_no_steps() -> None:
    assert len(aggregate_samples([Sample(T0, "nope.x", 1.0)], DAY_S)) == 0
    grouped = group_samples([Sample(T0 + 2, "rain.mm", 1.0), Sample(T0 + 1, "rain.mm", 2.0)])
    assert list(grouped["rain.mm"][0]) == [T0 + 1, T0 + 2]  # sorted by time
    with pytest.raises(ValueError, match="step length"):
        aggregate(grouped, 0, T0, T0 + 1)


def test_site_series_columns_all_produced() -> None:
    table = aggregate_samples([Sample(T0, "rain.mm", 0.0)], DAY_S)
    assert set(SITE_SERIES_COLUMNS) <= set(table.values)


@given(
    st.lists(
        st.tuples(st.floats(0, 3 * DAY_S - 1, allow_nan=False), st.integers(0, 5)),
        min_size=1,
        max_size=200,
    ),
    st.sampled_from([HOUR_S, 6 * HOUR_S, DAY_S]),
)
@settings(max_examples=60, deadline=None)
def test_rain_totals_are_conserved_and_order_does_not_matter(
    frames: list[tuple[float, int]], step_s: int
) -> None:
    samples = [Sample(T0 + t, "rain.mm", 0.2 * tips) for t, tips in frames]
    table = aggregate_samples(samples, step_s)
    shuffled = aggregate_samples(list(reversed(samples)), step_s)
    total = 0.2 * sum(tips for _, tips in frames)
    assert float(np.nansum(table.values["rain_mm"])) == pytest.approx(total, abs=1e-9)
    np.testing.assert_allclose(table.values["rain_mm"], shuffled.values["rain_mm"], atol=1e-9)
    assert int(table.counts["rain_mm"].sum()) == len(frames)
    assert ((table.completeness["rain_mm"] >= 0) & (table.completeness["rain_mm"] <= 1)).all()
