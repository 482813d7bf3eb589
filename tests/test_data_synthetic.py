"""The SYNTHETIC series generator: labelled, deterministic, and physically behaved."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from agent.features.site_series import read_site_series, write_site_series
from export.data.synthetic import SynthConfig, generate, generate_series


def test_labelled_synthetic_and_deterministic(tmp_path: Path) -> None:
    a = generate_series(400, seed=5)
    b = generate_series(400, seed=5)
    c = generate_series(400, seed=6)
    for k in a.columns:
        np.testing.assert_array_equal(a.columns[k], b.columns[k])
    assert not np.array_equal(a.columns["rain_mm"], c.columns["rain_mm"], equal_nan=True)
    back = read_site_series(write_site_series(a, tmp_path / "syn.csv"))
    assert back.synthetic and "SYNTHETIC" in back.meta["source"]
    assert (tmp_path / "syn.csv").read_text().startswith("# site: synthetic")


def test_displacement_accelerates_with_groundwater() -> None:
    s, truth = generate(1500, seed=2)
    cfg = SynthConfig()
    high = truth.groundwater_m > cfg.h_crit_m + 0.1
    low = truth.groundwater_m < cfg.h_crit_m
    assert high.sum() > 50 and low.sum() > 50
    assert truth.velocity_mm[high].mean() > 5 * truth.velocity_mm[low].mean()
    # groundwater follows rain with a delay: correlation with the 30-day antecedent rain is strong
    rain = np.nan_to_num(s.columns["rain_mm"])
    ante = np.convolve(rain, np.ones(30), mode="full")[: rain.size]
    assert np.corrcoef(ante, truth.groundwater_m)[0, 1] > 0.7


def test_gnss_noise_gaps_and_quakes() -> None:
    s, truth = generate(2000, seed=3)
    cfg = SynthConfig()
    az = math.radians(cfg.azimuth_deg)
    resid = s.columns["disp_e_mm"] - truth.displacement_mm * math.sin(az)
    ok = np.isfinite(resid)
    assert abs(np.std(resid[ok]) - cfg.noise_h_mm) < 0.2
    assert 0.005 < (~ok).mean() < 0.1  # a few outage days, not many
    assert 10 < s.columns["seismic_events"].sum() < 80
    quake = s.columns["pgv_mm_s"] > cfg.pgv_trigger_mm_s
    if quake.any():  # co-seismic slip adds to the rate on strong-shaking days
        assert truth.velocity_mm[quake].min() > cfg.v_creep_mm
