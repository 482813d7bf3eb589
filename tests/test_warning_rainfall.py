"""Rainfall intensity-duration rule (Guzzetti et al. 2008 global curve) and rain-event splitting,
on synthetic numbers and on the real Lamosano (IT) hourly and Mukilteo (US) 15-min gauges."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.compat import UTC
from agent.warning.inputs import RainInput
from agent.warning.levels import Level
from agent.warning.rainfall import id_threshold_mm_h, rain_events, rain_summary, rainfall_rule
from agent.warning.settings import LevelThresholds, RainfallSettings

NOW = 1_750_000_000.0
BAND = 0.2
CFG = RainfallSettings()


def _rain(duration_h: float, intensity: float, **kw: object) -> RainInput:
    args: dict[str, object] = {
        "t": NOW - 60,
        "intensities_mm_h": {},
        "event_duration_h": duration_h,
        "event_mean_intensity_mm_h": intensity,
        "completeness": 1.0,
    }
    args.update(kw)
    return RainInput(**args)  # type: ignore[arg-type]


def test_guzzetti_curve_values() -> None:
    assert id_threshold_mm_h(1.0, CFG) == pytest.approx(2.20)
    assert id_threshold_mm_h(10.0, CFG) == pytest.approx(2.20 * 10**-0.44)
    assert id_threshold_mm_h(100.0, CFG) == pytest.approx(0.291, abs=1e-3)


@pytest.mark.parametrize(
    ("multiple", "level"), [(0.5, 0), (0.999, 0), (1.0, 1), (1.99, 1), (2.0, 2), (50.0, 2)]
)
def test_rain_levels_at_multiples(multiple: float, level: int) -> None:
    dur = 24.0
    s = rainfall_rule(_rain(dur, multiple * id_threshold_mm_h(dur, CFG)), NOW, CFG, BAND)
    assert int(s.level) == level
    assert s.evidence["ratio"] == pytest.approx(multiple)
    assert "Guzzetti" in s.evidence["curve_source"]


def test_rain_site_curve_enables_warning() -> None:
    site = RainfallSettings(multiples=LevelThresholds(advisory=1, watch=2, warning=4), alpha=5.0, beta=0.5)
    assert rainfall_rule(_rain(4.0, 10.0), NOW, site, BAND).level == Level.WARNING  # 10 / (5 * 4^-0.5) = 4
    assert rainfall_rule(_rain(4.0, 9.9), NOW, site, BAND).level == Level.WATCH


def test_rain_rolling_windows_and_validity_range() -> None:
    # a 5-minute cloudburst: the event duration is outside 0.1..1000 h, the 1-h rolling window is not
    s = rainfall_rule(_rain(0.05, 60.0, intensities_mm_h={1.0: 5.0, 24.0: 0.2}), NOW, CFG, BAND)
    assert s.level == Level.WATCH and s.evidence["worst"] == "rolling_1h"
    assert any("event: duration 0.05 h outside" in x for x in s.evidence["skipped"])
    only_bad = rainfall_rule(_rain(2000.0, 1.0), NOW, CFG, BAND)
    assert only_bad.level == Level.NO_DATA and "validity range" in only_bad.reason
    nan = rainfall_rule(_rain(math.nan, 1.0, intensities_mm_h={3.0: 0.0}), NOW, CFG, BAND)
    assert nan.level == Level.NORMAL and len(nan.evidence["skipped"]) == 1


def test_rain_no_data() -> None:
    assert rainfall_rule(None, NOW, CFG, BAND).level == Level.NO_DATA
    assert rainfall_rule(_rain(5, 50, t=NOW - CFG.max_age_s - 1), NOW, CFG, BAND).level == Level.NO_DATA
    assert rainfall_rule(_rain(5, 50, completeness=0.5), NOW, CFG, BAND).level == Level.NO_DATA


def test_rain_events_split_on_dry_gap() -> None:
    t = np.arange(1, 25) * 3600.0  # hourly steps ending at 1..24 h
    mm = np.zeros(24)
    mm[[0, 1, 2]] = 2.0  # event A: 3 h
    mm[8] = 1.0  # 5 dry hours after A (< 6 h): same event
    mm[[15, 16]] = [4.0, np.nan]  # 6 dry hours after: a new event; NaN counts as dry
    ev = rain_events(t, mm, 3600.0, dry_gap_h=6.0)
    assert [(e.duration_h, e.total_mm) for e in ev] == [(9.0, 7.0), (1.0, 4.0)]
    assert ev[0].mean_intensity_mm_h == pytest.approx(7.0 / 9.0)
    assert rain_events(t, np.zeros(24), 3600.0) == []


def _lamosano(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    path = shared_data / "lamosano-italy" / "rain_hourly.csv"
    rows = list(csv.reader(path.read_text().splitlines()))[1:]
    fmt = "%d/%m/%Y %H:%M"
    t = np.array([datetime.strptime(r[0], fmt).replace(tzinfo=UTC).timestamp() for r in rows])
    return t, np.array([float(r[1]) for r in rows])


def test_real_lamosano_storm_vaia_reaches_watch(shared_data: Path) -> None:
    """Real: Lamosano (Belluno) hourly gauge. The Vaia storm (27-30 Oct 2018) must reach watch."""
    t, mm = _lamosano(shared_data)
    events = rain_events(t, mm, 3600.0, dry_gap_h=6.0)
    assert sum(e.total_mm for e in events) == pytest.approx(float(mm.sum()))  # nothing lost
    vaia_start = datetime(2018, 10, 27, tzinfo=UTC).timestamp()
    vaia_end = datetime(2018, 10, 31, tzinfo=UTC).timestamp()
    vaia = [e for e in events if vaia_start <= e.start < vaia_end]
    assert vaia and sum(e.total_mm for e in vaia) > 300
    worst = max(vaia, key=lambda e: e.mean_intensity_mm_h / id_threshold_mm_h(e.duration_h, CFG))
    s = rainfall_rule(_rain(worst.duration_h, worst.mean_intensity_mm_h, t=worst.end), worst.end, CFG, BAND)
    assert s.level == Level.WATCH


def test_real_mukilteo_tips_to_events(shared_data: Path) -> None:
    """Real: USGS Mukilteo MVD116 15-min tipping bucket, Aug-Dec 2015. The 6th column is rain in inches
    (0.01 in = 0.254 mm per tip, values 0, 0.01, 0.02, ...); times are local (offset irrelevant here)."""
    rows = (shared_data / "usgs-mukilteo-hydro" / "waMVD116_rain.txt").read_text().split("\n")
    parts = [r.split() for r in rows if r.strip()]
    t = np.array(
        [
            datetime(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), tzinfo=UTC).timestamp()
            for r in parts
        ]
    )
    mm = np.array([float(r[5]) * 25.4 for r in parts])
    events = rain_events(t, mm, 900.0, dry_gap_h=6.0)
    assert sum(e.total_mm for e in events) == pytest.approx(float(mm.sum()))
    assert all(e.duration_h >= 0.25 for e in events)
    levels = [int(rainfall_rule(_rain(e.duration_h, e.mean_intensity_mm_h, t=e.end), e.end, CFG, BAND).level)
              for e in events if e.duration_h >= 0.1]  # fmt: skip
    assert max(levels) >= 1 and min(levels) == 0


def test_rain_summary_windows_event_and_completeness() -> None:
    t = np.arange(1, 73) * 3600.0  # 72 hourly steps
    mm = np.zeros(72)
    mm[-3:] = 3.0  # raining for the last 3 h
    mm[10] = np.nan
    s = rain_summary(
        t, mm, now=72 * 3600.0, step_s=3600.0, windows_h=(1.0, 3.0, 24.0), antecedent_days=(1.0,)
    )
    assert s.intensities_mm_h == {1.0: 3.0, 3.0: 3.0, 24.0: 9.0 / 24}
    assert (s.event_duration_h, s.event_mean_intensity_mm_h) == (3.0, 3.0)
    assert s.antecedent_mm == {1.0: 9.0} and s.completeness == 1.0 and s.t == 72 * 3600.0
    s = rain_summary(t, mm, now=72 * 3600.0, step_s=3600.0, windows_h=(72.0,))
    assert s.completeness == pytest.approx(71 / 72)  # the NaN step is missing
    later = rain_summary(t, mm, now=80 * 3600.0, step_s=3600.0)  # 8 dry hours later: the event is over
    assert later.event_duration_h == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        rain_summary(t, mm[:-1], now=0.0, step_s=3600.0)


def test_real_lamosano_rain_summary_during_vaia(shared_data: Path) -> None:
    """Real: the summary the daemon would build at 2018-10-29 18:00 UTC, inside the Vaia storm."""
    t, mm = _lamosano(shared_data)
    now = datetime(2018, 10, 29, 18, tzinfo=UTC).timestamp()
    rain = rain_summary(t, mm, now, 3600.0)
    assert rain.completeness == 1.0 and rain.antecedent_mm[3.0] > 150
    s = rainfall_rule(rain, now, CFG, BAND)
    assert s.level == Level.WATCH and s.evidence["ratio"] > 2


ANY = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(ANY, ANY, ANY, st.dictionaries(ANY, ANY, max_size=5), st.dictionaries(ANY, ANY, max_size=3))
def test_rainfall_rule_never_raises_and_stays_strict_json(
    dur: float, inten: float, comp: float, rolling: dict[float, float], antecedent: dict[float, float]
) -> None:
    rain = _rain(dur, inten, completeness=comp, intensities_mm_h=rolling, antecedent_mm=antecedent)
    s = rainfall_rule(rain, NOW, CFG, BAND)
    assert Level.NO_DATA <= s.level <= Level.WATCH
    json.dumps(s.to_dict(), allow_nan=False)
