"""Pure kinematic rules on the recent displacement series: velocity thresholds and the inverse-velocity
time-of-failure method of Fukuzono (1985).

Fukuzono: before failure, 1/v decreases about linearly with time (Voight's alpha = 2); a straight line
fitted to 1/v over the accelerating phase reaches 0 at the predicted failure time t_f = -a/b.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.warning.inputs import DisplacementInput
from agent.warning.levels import Level, SourceLevel, grade, iso_utc, no_data
from agent.warning.rules import freshness_problem
from agent.warning.settings import InverseVelocitySettings, VelocitySettings

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class LineFit:
    """y = intercept + slope * x, with the coefficient of determination."""

    intercept: float
    slope: float
    r2: float
    n: int


def fit_line(x: NDArray[np.float64], y: NDArray[np.float64]) -> LineFit:
    """Least-squares line; R^2 = 1 - SS_res / SS_tot (1.0 when y is constant and fitted exactly)."""
    if x.size < 2:
        raise ValueError("fit_line needs at least 2 points")
    nan = float("nan")
    with np.errstate(all="ignore"):  # absurd magnitudes give a non-finite fit, judged by the callers
        try:
            slope, intercept = np.polyfit(x, y, 1)
        except (np.linalg.LinAlgError, ValueError):
            return LineFit(nan, nan, nan, int(x.size))
        resid = y - (intercept + slope * x)
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        ss_res = float(np.sum(resid**2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return LineFit(float(intercept), float(slope), r2, int(x.size))


def _window(d: DisplacementInput, window_s: float) -> tuple[NDArray[np.float64], ...]:
    times = np.asarray(d.times, dtype=np.float64)
    disp = np.asarray(d.displacement_mm, dtype=np.float64)
    comp = np.asarray(d.completeness, dtype=np.float64)
    if not (times.shape == disp.shape == comp.shape) or times.ndim != 1:
        raise ValueError(
            f"displacement arrays differ in shape: times {times.shape}, displacement {disp.shape}, "
            f"completeness {comp.shape}"
        )
    if times.size == 0:
        return times, disp, comp
    order = np.argsort(times, kind="stable")
    times, disp, comp = times[order], disp[order], comp[order]
    keep = np.isfinite(times) & (times >= np.nanmax(times) - window_s)
    # completeness is a fraction: NaN counts as 0, anything else is clipped to [0, 1]
    return times[keep], disp[keep], np.clip(np.where(np.isfinite(comp[keep]), comp[keep], 0.0), 0.0, 1.0)


def velocity_rule(d: DisplacementInput | None, now: float, cfg: VelocitySettings, band: float) -> SourceLevel:
    """Velocity (mm/day) = least-squares slope of cumulative displacement over the trailing window."""
    if d is None:
        return no_data("velocity", "no displacement series yet")
    try:
        times, disp, comp = _window(d, cfg.window_s)
    except ValueError as exc:
        return no_data("velocity", str(exc))
    valid = np.isfinite(disp)
    completeness = float(np.mean(np.where(valid, comp, 0.0))) if times.size else 0.0
    problem = freshness_problem(d.t, now, cfg.max_age_s, completeness, cfg.min_completeness)
    n_valid = int(valid.sum())
    if problem is None and n_valid < cfg.min_points:
        problem = f"only {n_valid} valid points in {cfg.window_s / DAY:.2f} d < minimum {cfg.min_points}"
    if problem is None and np.ptp(times[valid]) <= 0:
        problem = "all points at the same time"
    if problem is not None:
        return no_data("velocity", problem, completeness=completeness, dropped_nan=int((~valid).sum()))
    fit = fit_line((times[valid] - times[valid][-1]) / DAY, disp[valid])
    if not np.isfinite(fit.slope):
        return no_data(
            "velocity", "velocity fit is not finite (absurd displacement values)", completeness=completeness
        )
    g = grade(fit.slope, cfg.mm_per_day.as_tuple(), band=band)
    evidence = {
        "velocity_mm_day": fit.slope,
        "r2": fit.r2,
        "n_points": fit.n,
        "dropped_nan": int((~valid).sum()),
        "window_s": cfg.window_s,
        "thresholds_mm_day": g.thresholds,
    }
    return SourceLevel(
        "velocity",
        g.level,
        evidence,
        d.t + cfg.max_age_s,
        g.release_level,
        completeness=completeness,
        data_time=d.t,
        reason=f"velocity {fit.slope:.2f} mm/day over {cfg.window_s / DAY:.1f} d",
    )


def step_velocities(
    times: NDArray[np.float64], disp: NDArray[np.float64], smoothing: int = 1
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Velocities (mm/day) between consecutive points, at the interval midpoints; optional moving average.

    Pairs with a non-increasing time or a non-finite velocity are skipped."""
    with np.errstate(all="ignore"):
        dt = np.diff(times) / DAY
        v_all = np.diff(disp) / dt
        ok = (dt > 0) & np.isfinite(v_all)
        v = v_all[ok]
        t = (0.5 * (times[1:] + times[:-1]))[ok]
        if smoothing > 1 and v.size >= smoothing:
            v = np.convolve(v, np.ones(smoothing) / smoothing, mode="valid")
            t = t[smoothing - 1 :]
    return t, v


def _best_accelerating_fit(
    t_days: NDArray[np.float64], inv_v: NDArray[np.float64], cfg: InverseVelocitySettings
) -> tuple[LineFit | None, int, float]:
    """The longest trailing segment whose 1/v line falls with R^2 >= min_r2: (fit, start, best R^2 seen)."""
    best: LineFit | None = None
    best_start = -1
    best_r2 = float("nan")
    for start in range(t_days.size - cfg.min_points, -1, -1):
        fit = fit_line(t_days[start:], inv_v[start:])
        start_inv, end_inv = fit.intercept + fit.slope * t_days[start], fit.intercept + fit.slope * t_days[-1]
        falling = fit.slope < 0 and end_inv > 0 and start_inv >= cfg.min_acceleration_ratio * end_inv
        if not falling:
            continue
        if np.isnan(best_r2) or fit.r2 > best_r2:
            best_r2 = fit.r2
        if fit.r2 >= cfg.min_r2:
            best, best_start = fit, start
    return best, best_start, best_r2


def inverse_velocity_rule(
    d: DisplacementInput | None, now: float, cfg: InverseVelocitySettings, band: float
) -> SourceLevel:
    """Fukuzono (1985) time of failure from a linear fit of 1/v vs t over the accelerating phase."""
    if d is None:
        return no_data("inverse_velocity", "no displacement series yet")
    try:
        times, disp, comp = _window(d, cfg.window_s)
    except ValueError as exc:
        return no_data("inverse_velocity", str(exc))
    valid = np.isfinite(disp)
    completeness = float(np.mean(np.where(valid, comp, 0.0))) if times.size else 0.0
    problem = freshness_problem(d.t, now, cfg.max_age_s, completeness, cfg.min_completeness)
    t_v, v = step_velocities(times[valid], disp[valid], cfg.smoothing_points)
    if problem is None and v.size < cfg.min_points:
        problem = f"only {v.size} velocity points < minimum {cfg.min_points}"
    if problem is not None:
        return no_data("inverse_velocity", problem, completeness=completeness)
    base: dict[str, Any] = {
        "last_velocity_mm_day": float(v[-1]),
        "min_velocity_mm_day": cfg.min_velocity_mm_day,
        "min_r2": cfg.min_r2,
        "thresholds_time_to_failure_s": dict(
            zip(("advisory", "watch", "warning"), cfg.time_to_failure_s.as_tuple(), strict=True)
        ),
    }
    valid_until = d.t + cfg.max_age_s

    def result(level: Level, release: Level, evidence: dict[str, Any], reason: str) -> SourceLevel:
        return SourceLevel(
            "inverse_velocity", level, evidence, valid_until, release,
            completeness=completeness, data_time=d.t, reason=reason,
        )  # fmt: skip

    nonpos = np.flatnonzero(v <= 0)
    seg = slice(int(nonpos[-1]) + 1 if nonpos.size else 0, None)  # the accelerating phase has v > 0
    t_seg, v_seg = t_v[seg], v[seg]
    if v[-1] < cfg.min_velocity_mm_day or v_seg.size < cfg.min_points:
        reason = f"not accelerating: last velocity {v[-1]:.2f} mm/day or too few moving points ({v_seg.size})"
        return result(Level.NORMAL, Level.NORMAL, {**base, "reason": reason}, reason)
    t_days = (t_seg - now) / DAY
    with np.errstate(all="ignore"):
        fit, start, best_r2 = _best_accelerating_fit(t_days, 1.0 / v_seg, cfg)
    if fit is None:
        reason = (
            f"no linear 1/v fall by >= {cfg.min_acceleration_ratio:g}x with R^2 >= {cfg.min_r2:.2f} "
            f"(best R^2 {best_r2:.2f})"
        )
        return result(Level.NORMAL, Level.NORMAL, {**base, "best_r2": best_r2, "reason": reason}, reason)
    t_fail = now + (-fit.intercept / fit.slope) * DAY
    ttf = t_fail - now
    g = grade(ttf, cfg.time_to_failure_s.as_tuple(), band=band, higher_is_worse=False)
    evidence = {
        **base,
        "time_of_failure": iso_utc(t_fail),
        "time_to_failure_s": ttf,
        "failure_time_passed": ttf <= 0,
        "r2": fit.r2,
        "n_points": fit.n,
        "fit_start": iso_utc(float(t_seg[start])),
        "inv_v_slope_day_per_mm_per_day": fit.slope,
    }
    reason = f"1/v fit (R^2 {fit.r2:.2f}, {fit.n} points) predicts failure in {ttf / 3600:.1f} h"
    return result(g.level, g.release_level, evidence, reason)
