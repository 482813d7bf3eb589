"""Per-source rules at and around their thresholds; NO_DATA on stale, incomplete or broken inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.warning.inputs import ForecastInput, SeismicInput, SpatialInput, WireInput, WireState
from agent.warning.levels import Level, grade
from agent.warning.rules import forecast_rule, freshness_problem, seismic_rule, spatial_rule, wire_rule
from agent.warning.settings import ForecastSettings, SeismicSettings, SpatialSettings, WireSettings

NOW = 1_750_000_000.0
BAND = 0.2


# --- grading helper ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "level", "release"),
    [
        (0.0, 0, 0),
        (0.79, 0, 0),
        (0.8, 0, 1),  # inside the band below the advisory threshold 1.0
        (1.0, 1, 1),  # at the threshold: reached
        (3.99, 1, 1),
        (4.0, 1, 2),  # 5 * 0.8 = 4: band of watch
        (5.0, 2, 2),
        (16.0, 2, 3),
        (20.0, 3, 3),
        (1e9, 3, 3),
    ],
)
def test_grade_thresholds_and_band(value: float, level: int, release: int) -> None:
    g = grade(value, (1.0, 5.0, 20.0), band=BAND)
    assert (int(g.level), int(g.release_level)) == (level, release)


def test_grade_lower_is_worse_and_disabled_levels() -> None:
    ttf = (14.0, 3.0, 1.0)
    assert grade(15.0, ttf, band=0.0, higher_is_worse=False).level == Level.NORMAL
    assert grade(3.0, ttf, band=0.0, higher_is_worse=False).level == Level.WATCH
    assert grade(-5.0, ttf, band=0.0, higher_is_worse=False).level == Level.WARNING
    assert grade(3.5, ttf, band=0.2, higher_is_worse=False).release_level == Level.WATCH
    assert grade(99.0, (None, None, 100.0), band=0.0).level == Level.NORMAL
    assert grade(100.0, (None, None, 100.0), band=0.0).level == Level.WARNING
    with pytest.raises(ValueError, match="3 thresholds"):
        grade(1.0, (1.0, 2.0), band=0.0)


def test_freshness_problem_reasons() -> None:
    assert freshness_problem(NOW - 10, NOW, 60) is None
    assert "stale" in (freshness_problem(NOW - 61, NOW, 60) or "")
    assert "ahead of the clock" in (freshness_problem(NOW + 3600, NOW, 60) or "")
    assert "incomplete" in (freshness_problem(NOW, NOW, 60, 0.5, 0.8) or "")
    assert "not finite" in (freshness_problem(NOW, NOW, 60, math.nan, 0.8) or "")
    assert "not finite" in (freshness_problem(math.nan, NOW, 60) or "")
    assert freshness_problem(NOW, NOW, 60, None, 0.5) == "completeness not reported"
    assert freshness_problem(NOW, NOW, 60, None) is None  # no completeness required (the wire)


# --- wire -------------------------------------------------------------------------------------------
def _wire(state: WireState, age: float = 1.0) -> WireInput:
    return WireInput(state, NOW - age, NOW - age - 100)


def test_wire_states() -> None:
    cfg = WireSettings()
    assert wire_rule(_wire(WireState.INTACT), NOW, cfg).level == Level.NORMAL
    tripped = wire_rule(_wire(WireState.TRIPPED), NOW, cfg)
    assert tripped.level == Level.WARNING and not tripped.fault
    for fault in (WireState.OPEN_CIRCUIT, WireState.SHORT):
        s = wire_rule(_wire(fault), NOW, cfg)
        assert s.level == Level.ADVISORY and s.fault, fault
        assert "cannot confirm safety" in s.reason
    s = wire_rule(_wire(WireState.OPEN_CIRCUIT), NOW, WireSettings(fault_level=2))
    assert s.level == Level.WATCH
    assert wire_rule(None, NOW, cfg).level == Level.NO_DATA


def test_wire_stale_intact_is_no_data_but_stale_trip_is_held() -> None:
    cfg = WireSettings(max_age_s=300)
    assert wire_rule(_wire(WireState.INTACT, age=299), NOW, cfg).level == Level.NORMAL
    stale = wire_rule(_wire(WireState.INTACT, age=301), NOW, cfg)
    assert stale.level == Level.NO_DATA and "stale" in stale.reason
    trip = wire_rule(_wire(WireState.TRIPPED, age=10_000), NOW, cfg)
    assert trip.level == Level.WARNING and trip.evidence["stale"] is True


# --- forecast ---------------------------------------------------------------------------------------
def _fc(pred: float, lo: float = math.nan, hi: float = math.nan, **kw: object) -> ForecastInput:
    args: dict[str, object] = {
        "predicted_mm": pred,
        "t": NOW - 60,
        "model_name": "displacement",
        "model_version": "1.2.0",
        "completeness": 1.0,
        "interval_lo_mm": lo,
        "interval_hi_mm": hi,
        "interval_level": 0.9,
    }
    args.update(kw)
    return ForecastInput(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("pred", "level"), [(1.99, 0), (2.0, 1), (4.99, 1), (5.0, 2), (9.99, 2), (10.0, 3)])
def test_forecast_point_thresholds(pred: float, level: int) -> None:
    s = forecast_rule(_fc(pred), NOW, ForecastSettings(), BAND)
    assert int(s.level) == level
    assert s.model == "displacement@1.2.0"
    json.dumps(s.to_dict(), allow_nan=False)


def test_forecast_interval_policies() -> None:
    fc = _fc(6.0, lo=1.0, hi=12.0)
    point = forecast_rule(fc, NOW, ForecastSettings(), BAND)
    assert point.level == Level.WATCH and point.evidence["level_by"] == {"point": 2, "lower": 0, "upper": 3}
    assert forecast_rule(fc, NOW, ForecastSettings(interval_policy="lower"), BAND).level == Level.NORMAL
    assert forecast_rule(fc, NOW, ForecastSettings(interval_policy="upper"), BAND).level == Level.WARNING
    # no interval: the policy falls back to the point value and says so
    s = forecast_rule(_fc(6.0), NOW, ForecastSettings(interval_policy="upper"), BAND)
    assert s.level == Level.WATCH and s.evidence["interval_policy"] == "point"


def test_forecast_exceedance_probabilities() -> None:
    cfg = ForecastSettings()  # p_min 0.3 / 0.5 / 0.7 for thresholds 2 / 5 / 10 mm
    s = forecast_rule(_fc(1.0, exceedance={10.0: 0.69, 5.0: 0.9}), NOW, cfg, BAND)
    assert s.level == Level.WATCH and s.evidence["driver"] == "exceedance probability"
    s = forecast_rule(_fc(1.0, exceedance={10.0: 0.70}), NOW, cfg, BAND)
    assert s.level == Level.WARNING
    # a model threshold below the configured one cannot prove exceedance of the configured one
    s = forecast_rule(_fc(1.0, exceedance={9.0: 0.99}), NOW, cfg, BAND)
    assert s.level == Level.WATCH  # 9 mm >= 5 mm threshold: P(>9) is a lower bound of P(>5)
    s = forecast_rule(_fc(1.0, exceedance={1.0: 0.99}), NOW, cfg, BAND)
    assert s.level == Level.NORMAL
    # invalid probabilities are ignored, not trusted
    s = forecast_rule(_fc(1.0, exceedance={10.0: 1.5, 5.0: math.nan}), NOW, cfg, BAND)
    assert s.level == Level.NORMAL


def test_forecast_no_data_cases() -> None:
    cfg = ForecastSettings(max_age_s=3600, min_completeness=0.8)
    assert forecast_rule(None, NOW, cfg, BAND).level == Level.NO_DATA
    stale = forecast_rule(_fc(50.0, t=NOW - 3601), NOW, cfg, BAND)
    assert stale.level == Level.NO_DATA and "stale" in stale.reason
    assert forecast_rule(_fc(50.0, t=NOW - 3599), NOW, cfg, BAND).level == Level.WARNING
    inc = forecast_rule(_fc(50.0, completeness=0.79), NOW, cfg, BAND)
    assert inc.level == Level.NO_DATA and "incomplete" in inc.reason
    assert forecast_rule(_fc(50.0, completeness=0.8), NOW, cfg, BAND).level == Level.WARNING
    assert forecast_rule(_fc(math.nan), NOW, cfg, BAND).level == Level.NO_DATA


# --- seismic ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pgv", "triggers", "level"),
    [(0.0, 0, 0), (33.9, 4, 0), (34.0, 0, 1), (0.0, 5, 1), (80.9, 0, 1), (81.0, 0, 2), (5000.0, 99, 2)],
)
def test_seismic_levels(pgv: float, triggers: int, level: int) -> None:
    s = seismic_rule(SeismicInput(NOW - 5, pgv, triggers, 600.0), NOW, SeismicSettings(), BAND)
    assert int(s.level) == level


def test_seismic_no_data() -> None:
    cfg = SeismicSettings()
    assert seismic_rule(SeismicInput(NOW - 601, 100.0, 0, 600.0), NOW, cfg, BAND).level == Level.NO_DATA
    assert seismic_rule(SeismicInput(NOW, math.nan, 0, 600.0), NOW, cfg, BAND).level == Level.NO_DATA
    assert seismic_rule(SeismicInput(NOW, -1.0, 0, 600.0), NOW, cfg, BAND).level == Level.NO_DATA
    assert (
        seismic_rule(SeismicInput(NOW, 1.0, 0, 600.0, completeness=0.1), NOW, cfg, BAND).level
        == Level.NO_DATA
    )


# --- spatial ----------------------------------------------------------------------------------------
def _sp(frac: float, **kw: object) -> SpatialInput:
    args: dict[str, object] = {
        "t": NOW - 60,
        "area_fraction_above": frac,
        "probability_threshold": 0.5,
        "max_probability": 0.9,
        "model_name": "unet",
        "model_version": "0.3",
    }
    args.update(kw)
    return SpatialInput(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frac", "level"), [(0.0, 0), (0.049, 0), (0.05, 1), (0.149, 1), (0.15, 2), (1.0, 2)]
)
def test_spatial_levels(frac: float, level: int) -> None:
    s = spatial_rule(_sp(frac), NOW, SpatialSettings(), BAND)
    assert int(s.level) == level and s.model == "unet@0.3"


def test_spatial_no_data() -> None:
    cfg = SpatialSettings()
    assert spatial_rule(_sp(1.5), NOW, cfg, BAND).level == Level.NO_DATA
    assert spatial_rule(_sp(0.5, t=NOW - 27 * 3600), NOW, cfg, BAND).level == Level.NO_DATA
    assert spatial_rule(_sp(0.5, completeness=0.5), NOW, cfg, BAND).level == Level.NO_DATA
    assert spatial_rule(None, NOW, cfg, BAND).level == Level.NO_DATA


ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(
    ANY_FLOAT, ANY_FLOAT, ANY_FLOAT, ANY_FLOAT, ANY_FLOAT, st.dictionaries(ANY_FLOAT, ANY_FLOAT, max_size=4)
)
def test_forecast_rule_never_raises_and_stays_strict_json(
    pred: float, lo: float, hi: float, comp: float, age: float, exceedance: dict[float, float]
) -> None:
    fc = _fc(pred, lo, hi, completeness=comp, t=NOW - age, exceedance=exceedance)
    s = forecast_rule(fc, NOW, ForecastSettings(), BAND)
    assert Level.NO_DATA <= s.level <= Level.WARNING
    json.dumps(s.to_dict(), allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(ANY_FLOAT, st.integers(min_value=-5, max_value=10**6), ANY_FLOAT, ANY_FLOAT, ANY_FLOAT)
def test_seismic_and_spatial_rules_never_raise(
    pgv: float, n: int, frac: float, comp: float, age: float
) -> None:
    s1 = seismic_rule(SeismicInput(NOW - age, pgv, n, 600.0, comp), NOW, SeismicSettings(), BAND)
    s2 = spatial_rule(_sp(frac, completeness=comp, t=NOW - age), NOW, SpatialSettings(), BAND)
    for s in (s1, s2):
        json.dumps(s.to_dict(), allow_nan=False)


def test_json_safe_handles_numpy_and_non_finite() -> None:
    from agent.warning.levels import json_safe

    out = json_safe(
        {"a": np.float32(1.5), "b": np.array([1.0, np.nan]), "c": (np.int64(2), math.inf), 3: Level.WATCH}
    )
    assert out == {"a": 1.5, "b": [1.0, None], "c": [2, None], "3": 2}
    json.dumps(out, allow_nan=False)
