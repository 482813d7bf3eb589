"""The predictive distribution, the warning target and episode scoring: pure functions, fast."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.features import forecast_dist as fdist
from agent.features.forecast_output import interpret
from export.displacement.scoring import episode_scores, episodes, pool

META = {
    "feature_names": ["velocity_mm", "rain_mm"],
    "window": 6,
    "norm_mean": [0.2, 1.0],
    "norm_std": [1.0, 2.0],
    "horizons_steps": [1, 3, 7],
    "horizon_steps": 1,
    "projection": {"disp_e_mm": 1.0},
    "thresholds_mm": [1.0, 2.0, 3.0],
    "primary_threshold_mm": 2.0,
    "conformal_half_width_mm": 1.0,
    "conformal_nominal": 0.9,
    "scale_floor_mm": 0.2,
    "exceed_prob_cutoff": 0.4,
    "warning_source": "distribution",
    "warning": {"velocity_mm_per_step": 0.8, "k_steps": 7, "horizon_steps": 7},
    "model_variant": "moving_average",
}


@settings(max_examples=60, deadline=None)
@given(
    pred=st.floats(-20, 20),
    scale=st.floats(0.05, 5),
    seed=st.integers(0, 10_000),
    skew=st.floats(0.0, 3.0),
    nominal=st.sampled_from([0.8, 0.9, 0.95]),
    thr=st.floats(-60, 60),
)
def test_exceedance_agrees_with_the_interval(
    pred: float, scale: float, seed: int, skew: float, nominal: float, thr: float
) -> None:
    """P(exceed T) is high for T below the interval's lower bound and low above its upper bound."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=200) + skew * rng.exponential(size=200)
    q = fdist.residual_quantiles(r)
    lo, hi = fdist.interval(np.array([pred]), np.array([scale]), q, nominal)
    p = float(fdist.exceed_probability(np.array([pred]), np.array([scale]), q, thr)[0])
    assert 0.0 <= p <= 1.0
    if thr < lo[0]:
        assert p >= (1 + nominal) / 2 - 1e-9
    if thr > hi[0]:
        assert p <= (1 - nominal) / 2 + 1e-9
    p2 = float(fdist.exceed_probability(np.array([pred]), np.array([scale]), q, thr + 1.0)[0])
    assert p2 <= p + 1e-12  # non-increasing in the threshold


def test_interpret_multi_horizon_is_consistent_and_names_the_model() -> None:
    rng = np.random.default_rng(1)
    meta = dict(
        META, residual_quantiles={str(h): fdist.residual_quantiles(rng.normal(size=300)) for h in (1, 3, 7)}
    )
    x = ((np.full((1, 2, 6), 0.5) - 0.2) / 1.0).astype(np.float32)
    x[0, 0, ::2] += 1.0  # some spread in the velocities -> scale > floor
    thr = [1.0, 4.0, 9.0]
    fc = interpret({"displacement_mm": np.array([[0.5, 1.5, 3.5]])}, meta, 0.9, x=x, thresholds_mm=thr)
    assert [h.steps for h in fc.horizons] == [1, 3, 7] and fc.horizon_steps == 7
    assert fc.model_variant == "moving_average" and fc.displacement_mm == 3.5
    for h in fc.horizons:
        lo, hi = h.interval_mm
        assert lo < h.displacement_mm < hi
        for t, p in h.exceedance:
            assert (p >= 0.95 - 1e-9) if t < lo else True
            assert (p <= 0.05 + 1e-9) if t > hi else True
    assert [t for t, _ in fc.horizons[-1].exceedance] == thr and list(fc.exceed_prob) == thr
    assert fc.warning is not None and fc.warning.source == "distribution"
    # a faster forecast raises the alarm-rate warning probability; a site override of V applies
    fast = interpret({"displacement_mm": np.array([[2.0, 6.0, 14.0]])}, meta, 0.9, x=x, thresholds_mm=thr)
    assert fast.warning is not None and fast.warning.probability > fc.warning.probability
    assert fast.warning.raised
    high_v = interpret(
        {"displacement_mm": np.array([[2.0, 6.0, 14.0]])},
        meta,
        0.9,
        x=x,
        warning={"velocity_mm_per_step": 50.0},
    )
    assert high_v.warning is not None and high_v.warning.probability < 0.05 and not high_v.warning.raised


def test_white_noise_sigma_and_alarm_rate() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    motion = np.cumsum(0.3 + 0.05 * rng.normal(size=n))
    d = motion + 1.5 * rng.normal(size=n)
    d[rng.random(n) < 0.1] = np.nan
    est = fdist.white_noise_sigma(d)
    assert est["sigma_white_mm"] == pytest.approx(1.5, rel=0.12)
    assert est["lag1_autocorr"] < -0.4  # differenced white noise: about -0.5
    v = fdist.default_alarm_velocity(d, 7, est["sigma_white_mm"])
    vk = fdist.k_step_velocity(d, 7)
    assert v >= np.nanmedian(vk) + 2 * np.sqrt(2) * est["sigma_white_mm"] / 7 - 1e-9
    assert np.nanmean(vk > v) < 0.15


def test_events_gaps_and_horizon_labels() -> None:
    d = np.concatenate([np.arange(20) * 0.1, 2.0 + np.arange(10) * 2.0, 22.0 + np.arange(20) * 0.1])
    d[25] = np.nan  # a short gap is bridged
    ev = fdist.alarm_events(d, 3, 1.0)
    assert ev[22:30].all() and not ev[:22].any() and not ev[35:].any()
    lab = fdist.within_horizon(ev, 3)
    assert lab[19] and not lab[18] and not lab[-1]  # first event at step 22


def test_episode_scoring() -> None:
    events = np.zeros(100, bool)
    events[30:35] = True
    events[38:40] = True  # within K = 7 quiet steps of the first run: the same episode
    events[70:72] = True
    assert episodes(events, 7) == [(30, 39), (70, 71)]
    origins = np.arange(10, 95)
    warn = np.zeros(origins.size, bool)
    warn[origins == 27] = True  # 3 steps ahead of the first onset: caught, lead 3
    warn[origins == 70] = True  # on the onset day: no lead, the second episode is missed
    warn[origins == 50] = True  # nothing within 7 steps: a false-alarm day
    s = episode_scores(events, origins, warn, horizon=7, merge_gap=7, steps_per_year=365.25)
    assert (s["episodes"], s["episodes_caught"], s["episodes_missed"]) == (2, 1, 1)
    assert s["mean_lead_steps"] == 3.0 and s["false_alarm_days"] == 1
    assert s["false_alarm_days_per_year"] == pytest.approx(365.25 / origins.size)
    assert s["headline"] is False  # fewer than five episodes
    both = pool([s, s], 365.25)
    assert both["episodes"] == 4 and both["episodes_caught"] == 2 and both["f2"] == pytest.approx(s["f2"])


def test_engine_raises_the_alarm_rate_level_from_the_forecast_probability() -> None:
    from agent.warning.inputs import ForecastInput
    from agent.warning.rules import forecast_rule
    from agent.warning.settings import ForecastSettings

    cfg = ForecastSettings()
    now = 1_000_000.0

    def fc(p: float) -> ForecastInput:
        return ForecastInput(0.5, now, "displacement", "1", 1.0, alarm_probability=p, alarm_cutoff=0.4)

    assert forecast_rule(fc(0.39), now, cfg, 0.1).level == 0
    high = forecast_rule(fc(0.41), now, cfg, 0.1)
    assert high.level == cfg.alarm_rate_level == 2 and high.evidence["driver"] == "alarm-rate forecast"
    assert forecast_rule(fc(0.37), now, cfg, 0.1).release_level == 2  # within the band: held
    none = forecast_rule(ForecastInput(0.5, now, "displacement", "1", 1.0), now, cfg, 0.1)
    assert none.level == 0 and none.evidence["alarm_rate"] is None
