"""Multi-horizon forecast distribution and the site's warning target: pure numpy, shared by training,
evaluation and the gateway.

Horizons: ``meta["horizons_steps"]`` (e.g. [1, 3, 7]); a bundle without it has one horizon,
``meta["horizon_steps"]`` (default 1). The target of horizon h is the cumulative displacement
``D_h[t] = d[t + h] - d[t]`` along the station's direction of motion (mm).

Predictive distribution: ``D_h = pred_h + s * r`` where ``s`` is the window's local scale (the standard
deviation of the window's velocities, floored at ``meta["scale_floor_mm"]``) and ``r`` follows the
empirical distribution of the normalised signed residuals ``(y - pred) / s`` on the calibration part,
stored as quantiles at ``QUANTILE_LEVELS`` in ``meta["residual_quantiles"][str(h)]``. The interval at
nominal level c is ``pred + s * [Q((1-c)/2), Q((1+c)/2)]`` and ``P(D_h > T) = 1 - F((T - pred) / s)``
with F the piecewise-linear CDF through the same quantiles, so the two always agree: a threshold below
the interval's lower bound has P >= (1+c)/2, one above the upper bound P <= (1-c)/2.

Warning target (per site, ``meta["warning"]``): the K-step velocity ``v_K[s] = (d[s] - d[s-K]) / K``
exceeds the alarm rate ``V`` (mm/step) at some step s within the next H steps. For a horizon h < K,
``v_K[t+h] = (D_h + d[t] - d[t+h-K]) / K`` where the second term is already observed (the window);
for h >= K it is approximated by ``D_h / h``. ``P(warning) = max over horizons h <= H`` of
``P(v_K[t+h] > V)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agent.errors import BundleSchemaError

VELOCITY = "velocity_mm"
CLOSED_FORM: tuple[str, ...] = ("persistence", "moving_average", "linear_trend")
QUANTILE_LEVELS: tuple[float, ...] = tuple(round(0.025 * k, 3) for k in range(41))  # 0, 0.025 .. 1


def horizons_of(meta: Mapping[str, Any]) -> list[int]:
    """The model's horizons in steps; an older bundle without ``horizons_steps`` has only its one."""
    hs = meta.get("horizons_steps")
    if not hs:
        return [int(meta.get("horizon_steps", 1))]
    return [int(h) for h in hs]


def window_velocity(x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """De-normalised velocities (N, W) of model inputs x (N, F, W); missing steps are the training mean."""
    j = list(meta["feature_names"]).index(VELOCITY)
    return np.asarray(x[:, j, :], dtype=np.float64) * float(meta["norm_std"][j]) + float(meta["norm_mean"][j])


def closed_form_weights(kind: str, w: int) -> np.ndarray:
    """Per-step weights (W,): velocity estimate = sum(weights * window velocities). ``persistence``:
    the last step; ``moving_average``: the mean; ``linear_trend``: the least-squares slope of the
    window's positions (cumulated velocities)."""
    if kind == "persistence":
        out = np.zeros(w)
        out[-1] = 1.0
        return out
    if kind == "moving_average":
        return np.full(w, 1.0 / w)
    if kind == "linear_trend":
        # slope = sum_j c_j p_j with p_j = sum_{i<=j} v_i, c_j = (j - jbar) / sum (j - jbar)^2;
        # as weights on v_i: sum_{j>=i} c_j
        j = np.arange(w, dtype=np.float64)
        c = (j - j.mean()) / np.sum((j - j.mean()) ** 2)
        return np.ascontiguousarray(np.cumsum(c[::-1])[::-1])
    raise BundleSchemaError(f"unknown closed-form model {kind!r}", fix=f"use one of {list(CLOSED_FORM)}")


def closed_form_forecast(kind: str, x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """(N, H): h x the reference's velocity estimate over each window, for every horizon h."""
    v = window_velocity(x, meta)
    rate = v @ closed_form_weights(kind, v.shape[1])
    return rate[:, None] * np.asarray(horizons_of(meta), dtype=np.float64)[None, :]


def window_scale(x: np.ndarray, meta: Mapping[str, Any]) -> np.ndarray:
    """Local scale (N,) of each window: std of its velocities, floored at ``meta["scale_floor_mm"]``."""
    v = window_velocity(x, meta)
    floor = float(meta.get("scale_floor_mm", 0.1))
    return np.maximum(v.std(axis=1), floor)


def past_displacement(x: np.ndarray, meta: Mapping[str, Any], h: int, k: int) -> np.ndarray:
    """Observed d[t] - d[t + h - k] (N,) from the window's last k - h velocities (0 when h >= k)."""
    n = max(k - h, 0)
    v = window_velocity(x, meta)
    if n == 0:
        return np.zeros(v.shape[0])
    return v[:, -min(n, v.shape[1]) :].sum(axis=1)


def residual_quantiles(normalised_residuals: np.ndarray) -> list[float]:
    """Quantiles of the finite normalised residuals at ``QUANTILE_LEVELS`` (conservative 'higher' rank
    above the median, 'lower' below, so the stored interval is never narrower than the sample's)."""
    r = np.asarray(normalised_residuals, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return [float("nan")] * len(QUANTILE_LEVELS)
    lo = np.quantile(r, [q for q in QUANTILE_LEVELS if q < 0.5], method="lower")
    hi = np.quantile(r, [q for q in QUANTILE_LEVELS if q >= 0.5], method="higher")
    return [float(v) for v in np.concatenate([lo, hi])]


def quantile_at(qvals: Sequence[float], level: float) -> float:
    """The stored quantile at ``level`` (linear between the stored levels)."""
    return float(np.interp(level, QUANTILE_LEVELS, np.asarray(qvals, dtype=np.float64)))


def interval(
    pred: np.ndarray, scale: np.ndarray, qvals: Sequence[float], nominal: float
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed interval at ``nominal`` from the normalised residual quantiles."""
    lo = quantile_at(qvals, (1.0 - nominal) / 2.0)
    hi = quantile_at(qvals, (1.0 + nominal) / 2.0)
    return np.asarray(pred) + np.asarray(scale) * lo, np.asarray(pred) + np.asarray(scale) * hi


def exceed_probability(
    pred: np.ndarray, scale: np.ndarray, qvals: Sequence[float], threshold: float | np.ndarray
) -> np.ndarray:
    """P(D > threshold) = 1 - F((threshold - pred) / scale), F through the stored quantiles."""
    q = np.asarray(qvals, dtype=np.float64)
    z = (np.asarray(threshold, dtype=np.float64) - np.asarray(pred)) / np.asarray(scale)
    # np.interp needs increasing x; ties (repeated quantiles) are fine for a CDF
    cdf = np.interp(z, q, np.asarray(QUANTILE_LEVELS), left=0.0, right=1.0)
    return np.clip(1.0 - cdf, 0.0, 1.0)


def warning_probability(
    preds: np.ndarray, x: np.ndarray, meta: Mapping[str, Any], warning: Mapping[str, Any]
) -> np.ndarray:
    """P(v_K > V within the warning horizon) (N,) from the per-horizon predictions (N, H)."""
    hs = horizons_of(meta)
    k = int(warning["k_steps"])
    v = float(warning["velocity_mm_per_step"])
    h_max = int(warning["horizon_steps"])
    scale = window_scale(x, meta)
    out = np.zeros(preds.shape[0])
    for i, h in enumerate(hs):
        if h > h_max:
            continue
        qv = meta["residual_quantiles"][str(h)]
        thr = v * k - past_displacement(x, meta, h, k) if h < k else np.full(preds.shape[0], v * h)
        out = np.maximum(out, exceed_probability(preds[:, i], scale, qv, thr))
    return out


# ---- the warning target on an observed displacement series ---------------------------------------


def fill_short_gaps(d: np.ndarray, max_gap: int) -> np.ndarray:
    """Positions with gaps of at most ``max_gap`` missing steps filled linearly (longer gaps stay NaN)."""
    d = np.asarray(d, dtype=np.float64).copy()
    ok = np.isfinite(d)
    if ok.sum() < 2:
        return d
    idx = np.arange(d.size)
    filled = np.interp(idx, idx[ok], d[ok])
    # length of the NaN run each missing step belongs to
    run_id = np.cumsum(ok)
    lengths = np.bincount(run_id[~ok], minlength=run_id.max() + 1)
    inside = (~ok) & (idx > idx[ok][0]) & (idx < idx[ok][-1]) & (lengths[run_id] <= max_gap)
    d[inside] = filled[inside]
    return d


def k_step_velocity(d: np.ndarray, k: int, max_gap: int = 3) -> np.ndarray:
    """v_K[s] = (d[s] - d[s - k]) / k on positions with gaps of <= ``max_gap`` steps filled linearly;
    NaN where either position is still missing."""
    d = fill_short_gaps(d, max_gap)
    out = np.full(d.shape, np.nan)
    if k < len(d):
        out[k:] = (d[k:] - d[:-k]) / k
    return out


def alarm_events(d: np.ndarray, k: int, v: float) -> np.ndarray:
    """Boolean per step: the K-step velocity exceeds V (False where it is unknown)."""
    vk = k_step_velocity(d, k)
    return np.where(np.isfinite(vk), vk > v, False)


def within_horizon(events: np.ndarray, h: int) -> np.ndarray:
    """label[t] = any(events[t+1 .. t+h]) (False at the end where the horizon runs past the series)."""
    n = events.size
    c = np.concatenate([[0], np.cumsum(events.astype(np.int64))])
    idx = np.arange(n)
    hi = np.minimum(idx + h, n - 1)
    return (c[hi + 1] - c[np.minimum(idx + 1, n)]) > 0


def default_alarm_velocity(d_train: np.ndarray, k: int, noise_sigma: float) -> float:
    """Default V (mm/step) from the station's training history: the 85th percentile of its K-step
    velocity (the rate reached on its fastest ~15 % of days, e.g. seasonal acceleration), but at least
    its median K-step velocity plus 2 noise standard deviations of a K-step velocity
    (sqrt(2) * sigma / K), so that white noise alone reaches it on about 2 % of days."""
    vk = k_step_velocity(d_train, k)
    vk = vk[np.isfinite(vk)]
    if vk.size == 0:
        return float("nan")
    noise = 2.0 * np.sqrt(2.0) * noise_sigma / k if np.isfinite(noise_sigma) else 0.0
    return float(max(np.percentile(vk, 85.0), np.median(vk) + noise))


def white_noise_sigma(d: np.ndarray) -> dict[str, float]:
    """White-noise sigma of the positions from their daily increments u = diff(d).

    For positions = motion + white noise of sigma, the increments' lag-1 autocovariance is -sigma^2
    (the motion's part is small and positive), so sigma_white = sqrt(-gamma_1) (0 when gamma_1 >= 0).
    Also the increments' std, lag-1 autocorrelation and how many increment pairs were used.
    """
    u = np.diff(np.asarray(d, dtype=np.float64))
    ok = np.isfinite(u[1:]) & np.isfinite(u[:-1])
    if ok.sum() < 10:
        nan = float("nan")
        return {"sigma_white_mm": nan, "increment_std_mm": nan, "lag1_autocorr": nan, "pairs": int(ok.sum())}
    fin = u[np.isfinite(u)]
    mu = float(fin.mean())
    a, b = u[1:][ok] - mu, u[:-1][ok] - mu
    g1 = float(np.mean(a * b))
    g0 = float(np.var(fin))
    return {
        "sigma_white_mm": float(np.sqrt(max(-g1, 0.0))),
        "increment_std_mm": float(np.sqrt(g0)),
        "lag1_autocorr": g1 / g0 if g0 > 0 else float("nan"),
        "pairs": int(ok.sum()),
    }
