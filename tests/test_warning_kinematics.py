"""Velocity thresholds and the Fukuzono (1985) inverse-velocity rule: synthetic (labelled) and real GNSS."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.warning.inputs import DisplacementInput
from agent.warning.kinematics import fit_line, inverse_velocity_rule, step_velocities, velocity_rule
from agent.warning.levels import Level, parse_iso_utc
from agent.warning.settings import InverseVelocitySettings, LevelThresholds, VelocitySettings

DAY = 86400.0
NOW = 1_750_000_000.0
BAND = 0.2


def _series(times: np.ndarray, disp: np.ndarray, comp: np.ndarray | None = None) -> DisplacementInput:
    c = np.ones_like(times) if comp is None else comp
    return DisplacementInput(times.astype(float), disp.astype(float), c.astype(float), float(times[-1]))


def _creep(rate_mm_day: float, days: float = 5.0, step: float = DAY / 4) -> DisplacementInput:
    """Synthetic: constant-velocity creep ending at NOW."""
    t = np.arange(NOW - days * DAY, NOW + 1, step)
    return _series(t, rate_mm_day * (t - t[0]) / DAY)


def _fukuzono(t_fail: float, a: float = 0.05, days: float = 20.0, step: float = DAY / 4) -> DisplacementInput:
    """Synthetic: Voight alpha=2 acceleration, v = 1 / (a (t_f - t)) mm/day, so 1/v is linear in t."""
    t = np.arange(NOW - days * DAY, NOW + 1, step)
    disp = -(1.0 / a) * np.log((t_fail - t) / DAY)
    return _series(t, disp - disp[0])


def test_fit_line_exact_and_r2() -> None:
    x = np.arange(10.0)
    fit = fit_line(x, 3.0 - 2.0 * x)
    assert (
        fit.slope == pytest.approx(-2.0)
        and fit.intercept == pytest.approx(3.0)
        and fit.r2 == pytest.approx(1.0)
    )
    noisy = fit_line(x, np.array([0, 5, 1, 6, 0, 7, 1, 5, 0, 6], dtype=float))
    assert noisy.r2 < 0.2


@pytest.mark.parametrize(
    ("rate", "level"), [(0.5, 0), (0.99, 0), (1.001, 1), (5.001, 2), (19.0, 2), (20.001, 3)]
)
def test_velocity_levels_on_synthetic_creep(rate: float, level: int) -> None:
    s = velocity_rule(_creep(rate), NOW, VelocitySettings(), BAND)
    assert s.evidence["velocity_mm_day"] == pytest.approx(rate, rel=1e-9, abs=1e-9)
    assert int(s.level) == level


def test_velocity_band_and_window() -> None:
    s = velocity_rule(_creep(4.2), NOW, VelocitySettings(), BAND)
    assert s.level == Level.ADVISORY and s.release_level == Level.WATCH  # 4.2 >= 5 * 0.8
    # only the trailing window counts: a burst 10 days ago is outside the 3-day window
    t = np.arange(NOW - 12 * DAY, NOW + 1, DAY / 4)
    d = np.where(t < NOW - 10 * DAY, 100.0 * (t - t[0]) / DAY, 200.0)
    assert velocity_rule(_series(t, d), NOW, VelocitySettings(), BAND).level == Level.NORMAL


def test_velocity_no_data_and_nan_drops() -> None:
    cfg = VelocitySettings()
    assert velocity_rule(None, NOW, cfg, BAND).level == Level.NO_DATA
    stale = _creep(5.0)
    late = NOW + cfg.max_age_s + 1
    assert "stale" in velocity_rule(stale, late, cfg, BAND).reason
    t = np.arange(NOW - 3 * DAY, NOW + 1, DAY / 4)
    d = 5.0 * (t - t[0]) / DAY
    d[::2] = np.nan  # half the points missing: completeness 0.5 < 0.7
    s = velocity_rule(_series(t, d), NOW, cfg, BAND)
    assert s.level == Level.NO_DATA and "incomplete" in s.reason and s.evidence["dropped_nan"] == 7
    d2 = 5.0 * (t - t[0]) / DAY
    d2[3] = np.nan  # one gap: judged, and the drop is counted
    s2 = velocity_rule(_series(t, d2), NOW, cfg, BAND)
    assert s2.level == Level.WATCH and s2.evidence["dropped_nan"] == 1
    few = _series(t[-2:], d2[-2:])
    assert "valid points" in velocity_rule(few, NOW, cfg, BAND).reason
    bad = DisplacementInput(t, d2[:-1], np.ones_like(t), NOW)
    assert "differ in shape" in velocity_rule(bad, NOW, cfg, BAND).reason


def test_step_velocities_midpoints_and_smoothing() -> None:
    t = np.array([0.0, DAY, 2 * DAY, 2 * DAY, 4 * DAY])  # a duplicate time is skipped
    d = np.array([0.0, 1.0, 3.0, 3.0, 7.0])
    tv, v = step_velocities(t, d)
    assert v.tolist() == [1.0, 2.0, 2.0] and tv.tolist() == [DAY / 2, 1.5 * DAY, 3 * DAY]
    _, vs = step_velocities(t, d, smoothing=2)
    assert vs.tolist() == [1.5, 2.0]


@pytest.mark.parametrize(("ttf_days", "level"), [(20.0, 0), (10.0, 1), (2.5, 2), (0.75, 3)])
def test_inverse_velocity_predicts_synthetic_failure_time(ttf_days: float, level: int) -> None:
    t_fail = NOW + ttf_days * DAY
    s = inverse_velocity_rule(_fukuzono(t_fail, a=0.01), NOW, InverseVelocitySettings(), BAND)
    assert s.evidence["r2"] > 0.999
    predicted = parse_iso_utc(s.evidence["time_of_failure"])
    assert predicted is not None
    assert abs(predicted - t_fail) < 0.02 * ttf_days * DAY + 600  # within 2 % of the lead time
    assert int(s.level) == level


def test_inverse_velocity_failure_time_passed_is_warning() -> None:
    s = inverse_velocity_rule(_fukuzono(NOW + 0.3 * DAY), NOW + 0.5 * DAY, InverseVelocitySettings(), BAND)
    assert s.level == Level.WARNING and s.evidence["failure_time_passed"] is True


def test_inverse_velocity_constant_creep_is_not_accelerating() -> None:
    s = inverse_velocity_rule(_creep(5.0, days=10), NOW, InverseVelocitySettings(), BAND)
    assert s.level == Level.NORMAL and "no linear 1/v fall" in s.reason
    slow = inverse_velocity_rule(_creep(0.2, days=10), NOW, InverseVelocitySettings(), BAND)
    assert slow.level == Level.NORMAL and "not accelerating" in slow.reason


def test_inverse_velocity_poor_fit_is_rejected_by_r2() -> None:
    """Synthetic: Fukuzono velocities with 30 % multiplicative noise, integrated to displacement."""
    rng = np.random.default_rng(7)
    t = np.arange(NOW - 10 * DAY, NOW + 1, DAY / 4)
    v = 1.0 / (0.05 * (NOW + 2 * DAY - t) / DAY) * rng.lognormal(0.0, 0.3, t.size)
    disp = np.concatenate([[0.0], np.cumsum(v[1:] * np.diff(t) / DAY)])
    noisy = _series(t, disp)
    strict = inverse_velocity_rule(noisy, NOW, InverseVelocitySettings(min_r2=0.99), BAND)
    assert strict.level == Level.NORMAL
    assert "R^2 >= 0.99" in strict.reason, strict.reason
    loose = inverse_velocity_rule(noisy, NOW, InverseVelocitySettings(min_r2=0.3, smoothing_points=4), BAND)
    assert loose.level >= Level.ADVISORY, loose.reason
    assert 0.3 <= loose.evidence["r2"] < 0.99


def test_inverse_velocity_min_points_and_stale() -> None:
    s = _fukuzono(NOW + 2 * DAY, days=1.0)  # 4 step velocities < min_points 5
    assert inverse_velocity_rule(s, NOW, InverseVelocitySettings(), BAND).level == Level.NO_DATA
    ok = inverse_velocity_rule(s, NOW, InverseVelocitySettings(min_points=3), BAND)
    assert ok.level >= Level.WATCH
    late = NOW + InverseVelocitySettings().max_age_s + 1
    assert (
        inverse_velocity_rule(_fukuzono(NOW + 2 * DAY), late, InverseVelocitySettings(), BAND).level
        == Level.NO_DATA
    )


def _blkm(shared_data: Path) -> DisplacementInput:
    """Real: UNAVCO/PBO daily positions of BLKM, Salmon Falls landslide (Idaho), 2017-01..2018-06."""
    path = shared_data / "salmon-falls-gnss-hydro" / "gps" / "BLKM.pbo.nam08.csv"
    rows = list(csv.reader(path.read_text().splitlines()[12:]))
    times = np.array([parse_iso_utc(r[0] + "T12:00:00Z") for r in rows], dtype=float)
    north = np.array([float(r[1]) for r in rows])
    east = np.array([float(r[2]) for r in rows])
    return _series(times, np.hypot(north, east))


def test_velocity_on_real_salmon_falls_gnss(shared_data: Path) -> None:
    series = _blkm(shared_data)
    span_days = (series.times[-1] - series.times[0]) / DAY
    now = float(series.times[-1])
    cfg = VelocitySettings(window_s=span_days * DAY, min_completeness=0.0)
    s = velocity_rule(series, now, cfg, BAND)
    # BLKM moved about 162 mm east in ~510 days: ~0.3 mm/day, below the 1 mm/day default advisory
    assert 0.2 < s.evidence["velocity_mm_day"] < 0.45
    assert s.level == Level.NORMAL
    site = VelocitySettings(
        window_s=span_days * DAY,
        min_completeness=0.0,
        mm_per_day=LevelThresholds(advisory=0.2, watch=1, warning=5),
    )
    assert velocity_rule(series, now, site, BAND).level == Level.ADVISORY


def test_inverse_velocity_no_false_alarm_on_real_slow_creep(shared_data: Path) -> None:
    """Real daily GNSS noise on a slowly creeping slide must not produce a failure-time alarm."""
    series = _blkm(shared_data)
    cfg = InverseVelocitySettings(min_completeness=0.0)
    levels = []
    for end in range(60, series.times.size, 15):  # slide the evaluation time through the record
        part = _series(series.times[:end], series.displacement_mm[:end])
        levels.append(int(inverse_velocity_rule(part, float(part.times[-1]), cfg, BAND).level))
    assert len(levels) > 15
    assert max(levels) == 0, levels


def test_from_east_north_projection_and_hypot() -> None:
    t = np.array([0.0, 1.0, 2.0])
    east = np.array([0.0, 3.0, 6.0])
    north = np.array([0.0, -4.0, -8.0])
    d = DisplacementInput.from_east_north(t, east, north, np.ones(3))
    assert d.displacement_mm.tolist() == [0.0, 5.0, 10.0] and d.t == 2.0
    az = float(np.degrees(np.arctan2(3.0, -4.0)))  # the motion direction, clockwise from north
    p = DisplacementInput.from_east_north(t, east, north, np.ones(3), azimuth_deg=az)
    assert p.displacement_mm == pytest.approx([0.0, 5.0, 10.0])
    across = DisplacementInput.from_east_north(t, east, north, np.ones(3), azimuth_deg=az + 90)
    assert across.displacement_mm == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)


FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(min_value=-40 * DAY, max_value=DAY), FLOATS, FLOATS), max_size=40))
def test_kinematic_rules_never_raise_on_garbage(rows: list[tuple[float, float, float]]) -> None:
    t = np.array([NOW + r[0] for r in rows], dtype=float)
    d = DisplacementInput(t, np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), NOW)
    for s in (
        velocity_rule(d, NOW, VelocitySettings(min_completeness=0.0), BAND),
        inverse_velocity_rule(d, NOW, InverseVelocitySettings(min_completeness=0.0), BAND),
    ):
        assert Level.NO_DATA <= s.level <= Level.WARNING
        json.dumps(s.to_dict(), allow_nan=False)
