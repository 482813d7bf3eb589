"""Rain: tip counter, per-step totals, intensities, antecedent totals and events on the real USGS
Mukilteo MVD116 15-min gauge record (../shared/data/usgs-mukilteo-hydro) and hand-made cases."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from agent.compat import UTC
from agent.errors import ConfigError
from agent.sensors.bridge_device import rain_step
from agent.sensors.rain import (
    antecedent_totals,
    intensities,
    per_interval,
    rain_events,
    rolling_sum,
    summary,
)
from firmware_bridge.messages import Rain

STEP = 900.0  # 15 min
MM_PER_TIP = 0.254  # 0.01 in tipping bucket


def _mukilteo_raw(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rows as recorded: (time, tips). Times are the logger's clock (labelled UTC here; the file has
    no zone). The last column is inches (0.01 in per tip). The record has one missing 15-min step
    (2015-08-17 19:30) and four records repeated after 2015-10-01 05:00."""
    rows = np.loadtxt(shared_data / "usgs-mukilteo-hydro" / "waMVD116_rain.txt")
    stamps = [dt.datetime(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), tzinfo=UTC) for r in rows]
    t = np.array([s.timestamp() for s in stamps])
    return t, np.rint(rows[:, 5] * 100).astype(np.int64)


def _mukilteo(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Regular 15-min grid (first record to last) of tips; NaN for the missing step."""
    t, tips = _mukilteo_raw(shared_data)
    uniq, first = np.unique(t, return_index=True)
    n = int((uniq[-1] - uniq[0]) / STEP) + 1
    grid = np.full(n, np.nan)
    grid[((uniq - uniq[0]) / STEP).astype(np.int64)] = tips[first]
    return uniq[0] + STEP * np.arange(n), grid


def test_rain_counter_rule_to_steps_reproduces_the_gauge_record(shared_data: Path) -> None:
    """The bridge's rain rule (agent.sensors.bridge_device.rain_step) on the real record, sent as a
    device would: a u32 cumulative counter started near 2**32 (so it wraps), one reboot, and the
    file's four repeated records replaying old counter values."""
    t_raw, tips_raw = _mukilteo_raw(shared_data)
    assert len(t_raw) == 13082
    t, tips = _mukilteo(shared_data)
    assert len(t) == 13079 and int(np.isnan(tips).sum()) == 1
    assert np.nansum(tips) == 1706  # 17.06 in = 433.3 mm, Aug-Dec 2015
    first_tips: dict[float, int] = {}
    for ti, k in zip(t_raw.tolist(), tips_raw.tolist(), strict=True):
        first_tips.setdefault(ti, k)
    uniq_t = sorted(first_tips)
    cum_at = dict(zip(uniq_t, np.cumsum([first_tips[u] for u in uniq_t]).tolist(), strict=True))
    start = 2**32 - 300
    state = rain_step(None, 1, Rain(start, 0, 0), mm_per_tip=MM_PER_TIP, max_mm_per_h=400.0).state
    reboot_t = t_raw[6000]
    before_reboot = cum_at[uniq_t[uniq_t.index(reboot_t) - 1]]
    times, mm, kinds = [], [], Counter[str]()
    for ti in t_raw.tolist():
        boot = 1 if ti < reboot_t else 2
        value = (start + cum_at[ti]) % 2**32 if boot == 1 else cum_at[ti] - before_reboot
        uptime = int(ti - t_raw[0] + STEP) if boot == 1 else int(ti - reboot_t + STEP)
        d = rain_step(state, boot, Rain(value, uptime, 0), mm_per_tip=MM_PER_TIP, max_mm_per_h=400.0)
        kinds[d.kind] += 1
        state = d.state
        if d.tips is not None:
            times.append(ti + STEP - 1)
            mm.append(d.tips * MM_PER_TIP)
    assert kinds["reboot"] == 1 and kinds["wrap"] == 1
    assert kinds["implausible"] == kinds["regression"] == kinds["rebaseline"] == 0
    steps = per_interval(times, mm, STEP, t[0], len(t))
    np.testing.assert_allclose(steps, np.nan_to_num(tips) * MM_PER_TIP, atol=1e-9)
    assert sum(mm) == pytest.approx(1706 * MM_PER_TIP)


def test_rain_intensities_and_antecedent_match_naive_sums(shared_data: Path) -> None:
    t, tips = _mukilteo(shared_data)
    mm = np.nan_to_num(tips) * MM_PER_TIP
    inten = intensities(mm, STEP, (1.0, 3.0, 24.0))
    ante = antecedent_totals(mm, STEP, (3, 15))
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(mm), 200):
        for w, n in ((1.0, 4), (3.0, 12), (24.0, 96)):
            expect = mm[i - n + 1 : i + 1].sum() / w if i >= n - 1 else np.nan
            assert inten[w][i] == pytest.approx(expect, nan_ok=True)
        for d in (3, 15):
            n = 96 * d
            expect = mm[i - n + 1 : i + 1].sum() if i >= n - 1 else np.nan
            assert ante[d][i] == pytest.approx(expect, nan_ok=True)
    # wettest hour of the record: 0.19 + 0.16 in around 2015-11-17 14:15
    peak = int(np.nanargmax(inten[1.0]))
    assert dt.datetime.fromtimestamp(t[peak], UTC).date() == dt.date(2015, 11, 17)
    assert np.nanmax(inten[1.0]) >= (19 + 16) * MM_PER_TIP
    shifted = antecedent_totals(mm, STEP, (3,), exclude_current=True)[3]
    assert shifted[500] == pytest.approx(ante[3][499])


def test_rain_events_on_real_record_partition_the_rain(shared_data: Path) -> None:
    t, tips = _mukilteo(shared_data)
    mm = tips * MM_PER_TIP  # one NaN step (no record): dry inside events, NaN in rolling sums
    events = rain_events(t, mm, STEP, dry_gap_h=6.0)
    assert 20 < len(events) < 200
    assert sum(e.total_mm for e in events) == pytest.approx(np.nansum(mm))
    for a, b in itertools.pairwise(events):
        assert b.start - a.end >= 6 * 3600  # separated by at least the dry gap
    for e in events:
        inside = (t >= e.start) & (t < e.end)
        assert np.nansum(mm[inside]) == pytest.approx(e.total_mm)
        assert mm[inside][0] > 0 and mm[inside][-1] > 0
        assert e.mean_intensity_mm_h == pytest.approx(e.total_mm / e.duration_h)
    longer = rain_events(t, mm, STEP, dry_gap_h=24.0)
    assert len(longer) < len(events)
    big = rain_events(t, mm, STEP, dry_gap_h=6.0, min_total_mm=10.0)
    assert all(e.total_mm >= 10.0 for e in big) and 0 < len(big) < len(events)


def test_rain_events_hand_made() -> None:
    start = 1_700_000_000.0
    step = 3600.0
    mm = np.array([1.0, 2.0, 0, 0, 0, 0, 0, 0, 0, 3.0, 0, 0, 0, 0, 0, 1.0, np.nan, 1.0])
    t = start + step * np.arange(len(mm))
    ev = rain_events(t, mm, step, dry_gap_h=6.0)
    assert [(e.start, e.end, e.total_mm) for e in ev] == [
        (start, start + 2 * step, 3.0),
        (start + 9 * step, start + 18 * step, 5.0),  # 5 dry hours (< 6) do not split it
    ]
    assert ev[0].duration_h == 2.0 and ev[0].mean_intensity_mm_h == 1.5 and ev[0].peak_intensity_mm_h == 2.0
    assert ev[1].missing_steps == 1 and ev[1].duration_h == 9.0
    assert rain_events(t, np.zeros(len(t)), step) == []


def test_rain_rolling_sum_nan_and_summary() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(rolling_sum(x, 2), [np.nan, 3.0, np.nan, np.nan, 9.0, 11.0])
    s = summary(np.ones(96 * 30), STEP, windows_h=(1.0, 24.0), days=(3, 30))
    assert s == {
        "intensity_1h_mm_h": 4.0,
        "intensity_24h_mm_h": 4.0,
        "antecedent_3d_mm": 288.0,
        "antecedent_30d_mm": 2880.0,
    }
    with pytest.raises(ConfigError, match="whole number"):
        intensities(x, STEP, (0.3,))
