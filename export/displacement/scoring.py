"""Warnings scored as episodes, the way a site experiences them.

Event series ``e[s]``: the station's K-step velocity exceeds the alarm rate V at step s. An
**episode** is a run of event steps; runs separated by at most K quiet steps are one episode (the
K-step velocity of one acceleration flickers around V). Its onset is its first event step.

For a series of daily warnings ``w[t]`` (issued at origin t for the next H steps):
- an episode is **caught** when some warning was issued at an origin in [onset - H, onset - 1]
  (at least one step of lead); its **lead** is onset - the earliest such origin; otherwise **missed**;
- a **false-alarm day** is an origin with a warning but no event step in (t, t + H] and no event at t;
- ``false_alarm_days_per_year`` = false-alarm days / (origins with a forecast / steps per year);
- ``f2`` combines episode recall (caught / episodes) with day precision (warning days followed by an
  event within H / warning days); both are reported with their counts.
Only episodes whose onset lies in the scored span (after its first origin) count. A score resting on
fewer than ``MIN_EPISODES`` episodes is marked ``headline: false`` and must not be headlined.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from export.displacement.metrics import f_beta

MIN_EPISODES = 5


def episodes(events: np.ndarray, merge_gap: int) -> list[tuple[int, int]]:
    """(first, last) step index of each episode."""
    idx = np.nonzero(np.asarray(events, dtype=bool))[0]
    if idx.size == 0:
        return []
    out = [[int(idx[0]), int(idx[0])]]
    for i in idx[1:]:
        if i - out[-1][1] <= merge_gap + 1:
            out[-1][1] = int(i)
        else:
            out.append([int(i), int(i)])
    return [(a, b) for a, b in out]


def episode_scores(
    events: np.ndarray,
    origins: np.ndarray,
    warn: np.ndarray,
    horizon: int,
    merge_gap: int,
    steps_per_year: float,
) -> dict[str, Any]:
    """Scores of warnings ``warn`` issued at step indices ``origins`` against the event series.

    ``events`` covers the station's whole series (index = step); the scored span runs from the first
    to the last origin.
    """
    events = np.asarray(events, dtype=bool)
    origins = np.asarray(origins, dtype=np.int64)
    warn = np.asarray(warn, dtype=bool)
    if origins.size == 0:
        return empty_scores()
    lo, hi = int(origins.min()), int(origins.max())
    warn_at = np.zeros(events.size, dtype=bool)
    warn_at[origins[warn]] = True
    eps = [(a, b) for a, b in episodes(events, merge_gap) if lo < a <= hi + horizon]
    caught, leads = 0, []
    for onset, _end in eps:
        s0 = max(onset - horizon, 0)
        w = np.nonzero(warn_at[s0:onset])[0]
        if w.size:
            caught += 1
            leads.append(onset - (s0 + int(w[0])))
    c = np.concatenate([[0], np.cumsum(events.astype(np.int64))])
    ahead = c[np.minimum(origins + horizon, events.size - 1) + 1] - c[np.minimum(origins + 1, events.size)]
    true_day = (ahead > 0) | events[origins]
    warn_days = int(warn.sum())
    fa_days = int(np.sum(warn & ~true_day))
    good_days = int(np.sum(warn & (ahead > 0)))
    recall = caught / len(eps) if eps else 0.0
    precision = good_days / warn_days if warn_days else 0.0
    years = origins.size / steps_per_year
    return {
        "episodes": len(eps),
        "episodes_caught": caught,
        "episodes_missed": len(eps) - caught,
        "mean_lead_steps": float(np.mean(leads)) if leads else None,
        "warning_days": warn_days,
        "false_alarm_days": fa_days,
        "false_alarm_days_per_year": fa_days / years if years > 0 else None,
        "forecast_days": int(origins.size),
        "episode_recall": recall,
        "day_precision": precision,
        "f2": f_beta(precision, recall, 2.0),
        "headline": len(eps) >= MIN_EPISODES,
    }


def empty_scores() -> dict[str, Any]:
    return {
        "episodes": 0,
        "episodes_caught": 0,
        "episodes_missed": 0,
        "mean_lead_steps": None,
        "warning_days": 0,
        "false_alarm_days": 0,
        "false_alarm_days_per_year": None,
        "forecast_days": 0,
        "episode_recall": 0.0,
        "day_precision": 0.0,
        "f2": 0.0,
        "headline": False,
    }


def pool(scores: list[dict[str, Any]], steps_per_year: float) -> dict[str, Any]:
    """Sum the counts of several stations' (or origins') scores and recompute the rates."""
    if not scores:
        return empty_scores()
    tot = {
        k: sum(int(s[k]) for s in scores)
        for k in ("episodes", "episodes_caught", "warning_days", "false_alarm_days", "forecast_days")
    }
    good = sum(s["day_precision"] * s["warning_days"] for s in scores)
    leads = [s["mean_lead_steps"] * s["episodes_caught"] for s in scores if s["mean_lead_steps"] is not None]
    recall = tot["episodes_caught"] / tot["episodes"] if tot["episodes"] else 0.0
    precision = good / tot["warning_days"] if tot["warning_days"] else 0.0
    years = tot["forecast_days"] / steps_per_year
    return {
        **tot,
        "episodes_missed": tot["episodes"] - tot["episodes_caught"],
        "mean_lead_steps": sum(leads) / tot["episodes_caught"] if tot["episodes_caught"] else None,
        "false_alarm_days_per_year": tot["false_alarm_days"] / years if years > 0 else None,
        "episode_recall": recall,
        "day_precision": precision,
        "f2": f_beta(precision, recall, 2.0),
        "headline": tot["episodes"] >= MIN_EPISODES,
    }
