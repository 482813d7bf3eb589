"""LSI (seed 004 eqs. 4-5) as interpreted in docs/riskmap.md: hand-computed values and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent.errors import WarningRuleError
from agent.features.lsi import FACTORS, LsiParams, compute_lsi, rainfall_multiplier, static_score


def _factors(**kw: float) -> dict[str, np.ndarray]:
    base = {"slope": 30.0, "dem": 1500.0, "ndvi": 0.6, "ndwi": 0.0, "smi": 0.4, "ndbi": -0.2}
    base.update(kw)
    return {k: np.array([[v]], dtype=np.float64) for k, v in base.items()}


def test_hand_computed_values_table1_weights() -> None:
    # scaled: slope 30/60=.5, dem 1500/3000=.5, ndvi (0.6+1)/2=.8 -> 1-.8=.2 (negative weight),
    # ndwi .5, smi .4, ndbi (-.2+1)/2=.4 ; sum|w| = 1.0
    s = 0.25 * 0.5 + 0.15 * 0.5 + 0.2 * 0.2 + 0.2 * 0.5 + 0.1 * 0.4 + 0.1 * 0.4
    assert s == pytest.approx(0.42)
    score, frac = static_score(_factors(), LsiParams())
    assert float(score[0, 0]) == pytest.approx(0.42, abs=1e-12)
    assert float(frac[0, 0]) == pytest.approx(1.0)
    # reference storm P = P0 = 10 mm/h, D = D0 = 24 h -> R_m = 1 -> sigmoid(8 * (0.42 - 0.5))
    r = compute_lsi(_factors(), 10.0, 24.0)
    assert r.rainfall_multiplier == pytest.approx(1.0)
    assert float(r.lsi[0, 0]) == pytest.approx(1 / (1 + math.exp(0.64)), abs=1e-6)  # 0.34525
    # half intensity and half duration: R_m = 0.5**1.2 * 0.5**0.8 = 0.25
    r = compute_lsi(_factors(), 5.0, 12.0)
    assert r.rainfall_multiplier == pytest.approx(0.25)
    assert float(r.lsi[0, 0]) == pytest.approx(1 / (1 + math.exp(-8 * (0.25 * 0.42 - 0.5))), abs=1e-6)
    # double both: R_m = 4 -> z = 8 * (1.68 - 0.5) = 9.44
    r = compute_lsi(_factors(), 20.0, 48.0)
    assert float(r.lsi[0, 0]) == pytest.approx(1 / (1 + math.exp(-9.44)), abs=1e-6)


def test_rainfall_multiplier_eq5_and_clamp() -> None:
    p = LsiParams()
    assert rainfall_multiplier(0.0, 24.0, p) == 0.0
    assert rainfall_multiplier(20.0, 24.0, p) == pytest.approx(2**1.2)
    assert rainfall_multiplier(10.0, 48.0, p) == pytest.approx(2**0.8)
    assert rainfall_multiplier(1e6, 1e6, p) == p.rm_max


@pytest.mark.parametrize("p,d", [(-1.0, 5.0), (5.0, -1.0), (math.nan, 5.0), (5.0, math.inf)])
def test_bad_rain_is_a_typed_error(p: float, d: float) -> None:
    with pytest.raises(WarningRuleError) as exc:
        compute_lsi(_factors(), p, d)
    assert exc.value.fix


def test_vegetation_lowers_and_slope_raises_risk() -> None:
    lo = compute_lsi(_factors(ndvi=0.9), 10, 24).lsi[0, 0]
    hi = compute_lsi(_factors(ndvi=-0.5), 10, 24).lsi[0, 0]
    assert hi > lo
    assert (
        compute_lsi(_factors(slope=50), 10, 24).lsi[0, 0] > compute_lsi(_factors(slope=5), 10, 24).lsi[0, 0]
    )


finite = st.floats(-1e4, 1e4, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(
    vals=st.lists(finite, min_size=6, max_size=6),
    p1=st.floats(0, 200),
    p2=st.floats(0, 200),
    d1=st.floats(0, 500),
    d2=st.floats(0, 500),
)
def test_bounded_and_monotone_in_rain(vals: list[float], p1: float, p2: float, d1: float, d2: float) -> None:
    f = {k: np.array([v]) for k, v in zip(FACTORS, vals, strict=True)}
    (pa, pb), (da, db) = sorted((p1, p2)), sorted((d1, d2))
    a = compute_lsi(f, pa, da).lsi[0]
    b = compute_lsi(f, pb, db).lsi[0]
    assert 0.0 <= a <= 1.0 and 0.0 <= b <= 1.0
    assert b >= a - 1e-7


def test_nan_factors_renormalise_or_give_counted_nan() -> None:
    f = _factors()
    f["smi"] = np.array([[np.nan]])
    r = compute_lsi(f, 10, 24)
    # smi missing: weights renormalised over 0.9 -> S = (0.42 - 0.1*0.4) / 0.9
    assert float(r.static_score[0, 0]) == pytest.approx((0.42 - 0.04) / 0.9, abs=1e-6)
    assert r.partial_pixels == 1 and r.nan_pixels == 0
    g = {k: np.array([[1.0, np.nan]]) for k in FACTORS}
    r2 = compute_lsi(g, 10, 24)
    assert np.isnan(r2.lsi[0, 1]) and np.isfinite(r2.lsi[0, 0])
    assert r2.nan_pixels == 1
    # below min_weight_fraction (only slope + dem known = 0.4 of the weight) -> NaN
    h = {k: np.array([[np.nan]]) for k in FACTORS}
    h["slope"], h["dem"] = np.array([[30.0]]), np.array([[100.0]])
    assert compute_lsi(h, 10, 24).nan_pixels == 1


def test_params_are_strict_and_configurable() -> None:
    with pytest.raises(ValidationError):
        LsiParams.model_validate({"weights": {"slope": 1.0}})
    with pytest.raises(ValidationError):
        LsiParams.model_validate({"unknown": 1})
    with pytest.raises(ValidationError):
        LsiParams.model_validate(
            {"ranges": {**LsiParams().model_dump()["ranges"], "dem": {"lo": 5, "hi": 5}}}
        )
    custom = LsiParams.model_validate({"p0_mm_h": 5.0, "d0_h": 12.0, "alpha": 1.0, "beta": 1.0})
    assert rainfall_multiplier(10.0, 24.0, custom) == pytest.approx(4.0)
    assert LsiParams.model_validate(custom.model_dump()) == custom
    for name, field in LsiParams.model_fields.items():
        assert field.description, name


def test_factor_shape_mismatch_is_an_error() -> None:
    f = _factors()
    f["dem"] = np.zeros((2, 2))
    with pytest.raises(WarningRuleError):
        compute_lsi(f, 10, 24)
    del f["dem"]
    with pytest.raises(WarningRuleError):
        compute_lsi(f, 10, 24)
