"""Shared feature functions and chronological splits: no leakage, same windows for training and gateway."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import BundleSchemaError, SiteSeriesError, TrainingError
from agent.features import displacement as fd
from agent.features.forecast_output import interpret
from agent.features.site_series import SiteSeries, parse_iso
from export.data.synthetic import generate_series
from export.displacement.dataset import prepare, split_bounds


def _tiny(n: int = 40) -> SiteSeries:
    t = parse_iso("2021-01-01") + 86400.0 * np.arange(n)
    e = np.arange(n, dtype=float) * 0.6
    cols = {
        "disp_e_mm": e,
        "disp_n_mm": e * 0.8,
        "disp_u_mm": -0.1 * e,
        "rain_mm": np.where(np.arange(n) % 5 == 0, 10.0, 0.0),
    }
    cols["rain_mm"][3] = np.nan
    return SiteSeries(t, cols, {"station": "T", "step": "P1D"})


def test_projection_velocity_and_rain_sums() -> None:
    s = _tiny()
    proj = fd.fit_projection(s, 30)
    assert proj["disp_e_mm"] == pytest.approx(0.6 / 0.6 / np.hypot(1, 0.8))
    names = ["velocity_mm", "rain_mm", "rain_sum_3", "rain_sum_7", "rain_sum_30", "velocity_up_mm"]
    f = fd.build_features(s, names, proj)
    assert f.shape == (40, 6)
    assert np.isnan(f[0, 0]) and f[5, 0] == pytest.approx(0.6 * np.hypot(1, 0.8))
    # rain_sum_3 at step 5 = rain[3..5] with NaN at 3 counted as 0 -> 10 (step 5)
    assert f[5, 2] == pytest.approx(10.0)
    assert f[10, 4] == pytest.approx(30.0)  # steps 0, 5, 10 within the last 30
    y = fd.step_target(s, proj)
    assert np.isnan(y[-1]) and y[0] == pytest.approx(0.6 * np.hypot(1, 0.8))
    with pytest.raises(BundleSchemaError, match="unknown"):
        fd.build_features(s, ["velocity_mm", "tide"], proj)
    with pytest.raises(SiteSeriesError, match="disp_along_mm"):
        fd.along_displacement(s, {"disp_along_mm": 1.0})


def test_window_layout_padding_and_completeness() -> None:
    feats = np.arange(20, dtype=float).reshape(10, 2)
    feats[8, 0] = np.nan
    x, comp = fd.window_at(feats, 9, 4, [0.0, 0.0], [1.0, 2.0])
    assert x.shape == (2, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], [12, 14, 0, 18])  # NaN -> 0 (the training mean)
    np.testing.assert_allclose(x[1], [13 / 2, 15 / 2, 17 / 2, 19 / 2])
    assert comp == 0.75
    x0, comp0 = fd.window_at(feats, 1, 4, [0.0, 0.0], [1.0, 1.0])  # before the series start: missing
    np.testing.assert_allclose(x0[0], [0, 0, 0, 2])
    assert comp0 == 0.5


def test_splits_are_chronological_and_fitted_on_train_only() -> None:
    series = [generate_series(300, seed=1, station="A"), generate_series(260, seed=2, station="B")]
    prep = prepare(series, train_fraction=0.7, window=10)
    for i, s in enumerate(series):
        fit_end, train_end = split_bounds(len(s), 0.7)
        t_fit = prep.fit.t[prep.fit.station == i]
        t_cal = prep.cal.t[prep.cal.station == i]
        t_test = prep.test.t[prep.test.station == i]
        assert t_fit.max() < t_cal.min() <= t_cal.max() < t_test.min()
        assert t_cal.max() < s.times[train_end] <= t_test.min()
        assert t_fit.max() < s.times[fit_end]
        # every horizon's target of a training window lies before the test part
        last = (max(prep.meta["horizons_steps"]) - 1) * 86400.0
        assert t_cal.max() + last < s.times[train_end] and t_fit.max() + last < s.times[fit_end]
    # changing the TEST part (and the calibration part) does not change anything fitted
    wild = []
    for s in series:
        w = s.slice(0, len(s))
        _, train_end = split_bounds(len(s), 0.7)
        for c in ("disp_e_mm", "disp_n_mm", "rain_mm", "groundwater_m"):
            w.columns[c][train_end:] = w.columns[c][train_end:] * 50 + 1000
        wild.append(w)
    prep2 = prepare(wild, train_fraction=0.7, window=10)
    keys = ("norm_mean", "norm_std", "thresholds_mm", "station_projections", "feature_names")
    for key in (*keys, "station_warnings", "noise", "scale_floor_mm"):
        assert prep2.meta[key] == prep.meta[key], key
    np.testing.assert_array_equal(prep2.fit.x, prep.fit.x)
    assert not np.array_equal(prep2.test.y, prep.test.y)


def test_normalisation_matches_fit_rows_and_threshold_is_train_percentile() -> None:
    s = generate_series(300, seed=4)
    prep = prepare([s], train_fraction=0.7, window=10)
    fit_end, train_end = split_bounds(len(s), 0.7)
    proj = prep.meta["projection"]
    rows = fd.build_features(s.slice(0, fit_end), prep.meta["feature_names"], proj)
    assert prep.meta["norm_mean"][0] == pytest.approx(np.nanmean(rows[:, 0]))
    y = fd.step_target(s.slice(0, train_end), proj)
    assert prep.meta["primary_threshold_mm"] == pytest.approx(np.percentile(y[np.isfinite(y)], 90))
    assert sum(prep.counts.values()) > 0  # windows over GNSS gaps were dropped and counted


def test_gateway_window_equals_training_window_and_interpret() -> None:
    s = generate_series(200, seed=9)
    prep = prepare([s], train_fraction=0.7, window=12, horizons=(1,))
    meta = dict(prep.meta, conformal_half_width_mm=1.5)
    end = len(prep.test) - 1  # the last test window ends at step t_target - 1
    last_end_step = int(np.searchsorted(s.times, prep.test.t[end])) - 1
    x, comp = fd.latest_window(s.slice(0, last_end_step + 1), meta)
    assert x.shape == (1, len(meta["feature_names"]), 12)
    np.testing.assert_array_equal(x[0], prep.test.x[end])
    assert comp >= meta["min_completeness"]
    # an older one-horizon bundle (no residual quantiles): conformal interval, exceedance head
    k = len(meta["thresholds_mm"])
    fc = interpret(
        {"displacement_mm": np.array([[2.0]]), "exceed_prob": np.linspace(0.9, 0.1, k)[None]}, meta, comp
    )
    assert fc.displacement_mm == 2.0 and fc.interval_mm == (0.5, 3.5) and fc.interval_nominal == 0.9
    assert fc.exceeds_threshold == (meta["primary_threshold_mm"] < 2.0)
    assert list(fc.exceed_prob) == [float(t) for t in meta["thresholds_mm"]]
    assert fc.exceeds_by_probability is None and fc.warning is None  # no cutoff in this meta
    probs = np.linspace(0.9, 0.1, k)
    fc2 = interpret(
        {"displacement_mm": np.array([[0.0]]), "exceed_prob": probs[None]}, meta | {"exceed_prob_cutoff": 0.3}
    )
    assert fc2.exceeds_by_probability is True and fc2.exceeds_threshold is False
    with pytest.raises(BundleSchemaError, match="exceedance probabilities"):
        interpret({"displacement_mm": np.array([[2.0]]), "exceed_prob": np.zeros((1, k + 1))}, meta)
    with pytest.raises(BundleSchemaError, match="lacks"):
        interpret({}, {"window": 3})


def test_gateway_uses_each_stations_own_projection() -> None:
    a = generate_series(220, seed=11, station="A")
    b = generate_series(220, seed=12, station="B")
    b.columns["disp_e_mm"] = -b.columns["disp_e_mm"]  # B moves the other way
    prep = prepare([a, b], train_fraction=0.7, window=10)
    meta = prep.meta
    assert fd.projection_for(meta, "B") != fd.projection_for(meta, "A")
    assert fd.projection_for(meta, "unknown") == fd.projection_for(meta, "A")  # default = first station
    sel = np.nonzero(prep.test.station == 1)[0]
    i = int(sel[-1])
    end = int(np.searchsorted(b.times, prep.test.t[i])) - 1
    x, _ = fd.latest_window(b.slice(0, end + 1), meta)
    np.testing.assert_array_equal(x[0], prep.test.x[i])
    feats = fd.build_features_for(b, meta)
    assert feats.shape == (len(b), len(meta["feature_names"]))


def test_common_split_date_puts_every_test_target_after_every_training_target() -> None:
    a = generate_series(300, seed=21, station="A")
    b = generate_series(260, seed=22, station="B").slice(20, 260)  # starts later, ends earlier
    cut = parse_iso("2020-08-01")
    prep = prepare([a, b], test_from=cut, window=10)
    assert max(prep.fit.t.max(), prep.cal.t.max()) < cut <= prep.test.t.min()
    with pytest.raises(TrainingError, match="split date"):
        prepare([a], test_from=parse_iso("2030-01-01"))
