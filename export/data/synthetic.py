"""A physically grounded SYNTHETIC daily site series (labelled synthetic in its metadata). numpy only.

Model (one step = one day):
- rain: a two-state Markov chain (wet/dry, seasonal wet probability) with gamma-distributed wet-day
  amounts (mm);
- groundwater: a linear reservoir, ``h[t+1] = h[t] + infiltration * rain[t] / 1000 / porosity
  - (h[t] - h_base) / tau`` (m above the base level);
- displacement rate along the slope: creep plus a term that grows as a power of the groundwater excess
  over a critical level, ``v = v_creep + k * max(h - h_crit, 0) ** p`` (mm/day) — the slope
  accelerates when groundwater is high; an earthquake with peak ground velocity above ``pgv_trigger``
  adds a co-seismic slip proportional to the excess;
- GNSS: east/north/up = true motion along the azimuth (with subsidence ``up_ratio``) plus white noise
  of ``noise_h_mm`` / ``noise_u_mm``; outages of a few days are NaN gaps; a few rain days are missing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from agent.features.site_series import SiteSeries, parse_iso


@dataclass(frozen=True)
class SynthConfig:
    start: str = "2020-01-01T00:00:00Z"
    p_wet_after_dry: float = 0.25
    p_wet_after_wet: float = 0.6
    seasonal_amplitude: float = 0.5  # relative change of the wet probability over the year
    rain_shape: float = 0.8
    rain_scale_mm: float = 9.0
    infiltration: float = 0.35
    porosity: float = 0.1
    tau_days: float = 25.0
    h_base_m: float = 1.0
    h_crit_m: float = 1.25
    v_creep_mm: float = 0.05
    k_mm_per_m: float = 12.0
    power: float = 1.5
    azimuth_deg: float = 120.0
    up_ratio: float = -0.4
    noise_h_mm: float = 1.5
    noise_u_mm: float = 5.0
    quake_rate_per_day: float = 0.02
    pgv_median_mm_s: float = 0.5
    pgv_trigger_mm_s: float = 5.0
    coseismic_mm_per_mm_s: float = 0.8
    outage_rate_per_day: float = 0.01
    outage_max_days: int = 5
    rain_missing_rate: float = 0.01


@dataclass
class SynthTruth:
    """Noise-free quantities behind a synthetic series (for tests)."""

    velocity_mm: np.ndarray  # true along-slope displacement per day
    displacement_mm: np.ndarray  # true cumulative along-slope displacement
    groundwater_m: np.ndarray


def generate(
    days: int, seed: int, config: SynthConfig | None = None, station: str = "SYN1"
) -> tuple[SiteSeries, SynthTruth]:
    """Generate ``days`` daily steps; deterministic for a given seed and config."""
    cfg = config or SynthConfig()
    rng = np.random.default_rng(seed)
    t0 = parse_iso(cfg.start)
    times = t0 + 86400.0 * np.arange(days, dtype=np.float64)
    doy = (times - t0) / 86400.0 % 365.25
    season = 1.0 + cfg.seasonal_amplitude * np.cos(2 * math.pi * doy / 365.25)
    rain = np.zeros(days)
    wet = False
    for i in range(days):
        p = (cfg.p_wet_after_wet if wet else cfg.p_wet_after_dry) * season[i]
        wet = bool(rng.random() < min(p, 0.95))
        if wet:
            rain[i] = rng.gamma(cfg.rain_shape, cfg.rain_scale_mm)
    h = np.empty(days)
    level = cfg.h_base_m
    for i in range(days):
        h[i] = level
        level += cfg.infiltration * rain[i] / 1000.0 / cfg.porosity - (level - cfg.h_base_m) / cfg.tau_days
    quakes = rng.random(days) < cfg.quake_rate_per_day
    pgv = np.where(quakes, rng.lognormal(math.log(cfg.pgv_median_mm_s), 1.5, days), 0.0)
    v = cfg.v_creep_mm + cfg.k_mm_per_m * np.clip(h - cfg.h_crit_m, 0.0, None) ** cfg.power
    v = v + cfg.coseismic_mm_per_mm_s * np.clip(pgv - cfg.pgv_trigger_mm_s, 0.0, None)
    d = np.concatenate([[0.0], np.cumsum(v[:-1])])
    az = math.radians(cfg.azimuth_deg)
    e = d * math.sin(az) + rng.normal(0.0, cfg.noise_h_mm, days)
    n = d * math.cos(az) + rng.normal(0.0, cfg.noise_h_mm, days)
    u = cfg.up_ratio * d + rng.normal(0.0, cfg.noise_u_mm, days)
    gap = np.zeros(days, dtype=bool)
    for start in np.nonzero(rng.random(days) < cfg.outage_rate_per_day)[0].tolist():
        gap[start : start + int(rng.integers(1, cfg.outage_max_days + 1))] = True
    for arr in (e, n, u):
        arr[gap] = np.nan
    rain_obs = rain.copy()
    rain_obs[rng.random(days) < cfg.rain_missing_rate] = np.nan
    columns = {
        "disp_e_mm": e,
        "disp_n_mm": n,
        "disp_u_mm": u,
        "rain_mm": rain_obs,
        "groundwater_m": h.copy(),
        "pgv_mm_s": pgv,
        "seismic_events": quakes.astype(np.float64),
    }
    meta = {
        "site": "synthetic",
        "station": station,
        "step": "P1D",
        "source": f"SYNTHETIC: export.data.synthetic seed={seed} days={days}",
        "synthetic": "true",
        "synth_config": " ".join(f"{k}={v}" for k, v in asdict(cfg).items()),
    }
    return SiteSeries(times, columns, meta), SynthTruth(v, d, h)


def generate_series(
    days: int, seed: int, config: SynthConfig | None = None, station: str = "SYN1"
) -> SiteSeries:
    return generate(days, seed, config, station)[0]
