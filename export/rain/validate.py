"""Honest validation of calibrated rain thresholds: leave-one-event-out, a chronological split, exact
binomial intervals, and the default intensity-duration curve judged on the same day table.

- **Leave-one-event-out (LOEO)**: for each event (landslide days of one storm), every candidate model is
  refitted and every level's threshold and model re-chosen without that event's days; the event is
  caught when a day of it reaches the refitted level. POD = caught / events. The false-alarm and
  warning days per year of a fold are those of its refitted rule over the whole record; the figures
  reported are the means over folds.
- **Chronological split**: fit on the first ``train_fraction`` of the days, test on the rest (out of
  sample for both the events and the false alarms).
- POD intervals are Clopper-Pearson (exact binomial) 95 %. Skill is claimed only when the lower bound
  is above the POD a random rule flagging as many days would reach.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import beta

from agent.warning.rainfall import id_threshold_mm_h
from agent.warning.settings import RainfallSettings
from export.rain.calibrate import (
    LEVELS,
    Candidate,
    LevelChoice,
    Model,
    auc,
    caught,
    choose_levels,
    event_groups,
    fit,
    flagged_days,
    threshold_for,
)
from export.rain.table import DayTable

log = logging.getLogger(__name__)
MIN_EVENTS_FOR_SKILL = 10


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return (lo, hi)


def chance_pod(flag_rate: float, groups: list[NDArray[np.int64]]) -> float:
    """POD of a rule flagging days at random with probability ``flag_rate``."""
    if not groups:
        return 0.0
    return float(np.mean([1.0 - (1.0 - flag_rate) ** len(g) for g in groups]))


def level_figures(
    score: NDArray[np.float64], thr: float | None, table: DayTable, groups: list[NDArray[np.int64]]
) -> dict[str, Any]:
    years = table.years()
    got = caught(score, thr, groups)
    fa = flagged_days(score, thr, ~table.event)
    warn = flagged_days(score, thr, np.ones(table.days.size, dtype=bool))
    return {
        "pod": float(got.mean()) if got.size else math.nan,
        "caught": int(got.sum()),
        "events": len(groups),
        "false_alarm_days_per_year": fa / years,
        "warning_days_per_year": warn / years,
    }


def skill_statement(k: int, n: int, warning_days_per_year: float, groups: list[NDArray[np.int64]]) -> str:
    lo, hi = clopper_pearson(k, n)
    chance = chance_pod(warning_days_per_year / 365.25, groups)
    if n < MIN_EVENTS_FOR_SKILL:
        return (
            f"too few events to claim skill: {k} of {n} caught, POD 95 % interval "
            f"{lo:.2f}-{hi:.2f} (a random rule flagging as many days reaches {chance:.2f})"
        )
    if lo > chance:
        return (
            f"POD above chance: 95 % interval {lo:.2f}-{hi:.2f} > {chance:.2f} "
            "for random flags of as many days"
        )
    return (
        f"no demonstrated skill: POD 95 % interval {lo:.2f}-{hi:.2f} includes the {chance:.2f} "
        "that random flags of as many days reach"
    )


def loeo(
    table: DayTable,
    cands: list[Candidate],
    targets: dict[str, float],
    groups: list[NDArray[np.int64]],
    gap_days: int,
) -> dict[str, dict[str, Any]]:
    """Leave-one-event-out: refit and re-choose without each event; judge the level on it."""
    hits = {lv: 0 for lv in LEVELS}
    fa = {lv: [] for lv in LEVELS}  # type: dict[str, list[float]]
    warn = {lv: [] for lv in LEVELS}  # type: dict[str, list[float]]
    chosen: dict[str, Counter[str]] = {lv: Counter() for lv in LEVELS}
    all_days = np.ones(table.days.size, dtype=bool)
    warm: dict[str, Any] = {}
    for g in groups:
        keep = np.ones(table.days.size, dtype=bool)
        keep[g[0] : g[-1] + 1] = False
        train = table.subset(keep)
        t_groups = event_groups(train, gap_days)
        models = [fit(c, train, probability=False, warm=warm) for c in cands]
        choice = choose_levels(train, models, targets, t_groups)
        for lv, ch in choice.items():
            s = ch.model.score(table)
            if ch.threshold is not None and np.any(s[g] >= ch.threshold):
                hits[lv] += 1
            fa[lv].append(flagged_days(s, ch.threshold, ~table.event) / table.years())
            warn[lv].append(flagged_days(s, ch.threshold, all_days) / table.years())
            chosen[lv][ch.model.candidate.name] += 1
    n = len(groups)
    out: dict[str, dict[str, Any]] = {}
    for lv in LEVELS:
        w = float(np.mean(warn[lv]))
        out[lv] = {
            "pod": hits[lv] / n,
            "caught": hits[lv],
            "events": n,
            "pod_ci95": list(clopper_pearson(hits[lv], n)),
            "false_alarm_days_per_year": float(np.mean(fa[lv])),
            "warning_days_per_year": w,
            "chosen_in_folds": dict(chosen[lv].most_common(5)),
            "skill": skill_statement(hits[lv], n, w, groups),
        }
    return out


def chronological(
    table: DayTable, cands: list[Candidate], targets: dict[str, float], gap_days: int, train_fraction: float
) -> dict[str, Any]:
    cut = int(table.days.size * train_fraction)
    first = np.zeros(table.days.size, dtype=bool)
    first[:cut] = True
    train, test = table.subset(first), table.subset(~first)
    tr_groups, te_groups = event_groups(train, gap_days), event_groups(test, gap_days)
    from export.rain.series import iso_day

    out: dict[str, Any] = {
        "train": f"{iso_day(train.days[0])}..{iso_day(train.days[-1])}",
        "test": f"{iso_day(test.days[0])}..{iso_day(test.days[-1])}",
        "train_events": len(tr_groups),
        "test_events": len(te_groups),
    }
    if not tr_groups or not te_groups:
        out["note"] = "no event in one of the two parts: the chronological split cannot be judged"
        return out
    choice = choose_levels(train, [fit(c, train, probability=False) for c in cands], targets, tr_groups)
    for lv, ch in choice.items():
        fig = level_figures(ch.model.score(test), ch.threshold, test, te_groups)
        fig["predictor"] = ch.model.candidate.name
        fig["pod_ci95"] = list(clopper_pearson(fig["caught"], fig["events"]))
        out[lv] = fig
    return out


def id_curve(table: DayTable, cfg: RainfallSettings | None = None) -> dict[str, Any]:
    """The engine's default ID rule (I = alpha*D^-beta at its multiples) replayed day by day on the table,
    with the durations the daemon gives it: the 24 h total (and the 1-24 h maxima with hourly data) and
    the current rain event (the run of wet days up to the day). The worst ratio is graded."""
    cfg = cfg or RainfallSettings()
    groups = event_groups(table)
    ratio = np.full(table.days.size, -np.inf)
    pairs: list[tuple[float, NDArray[np.float64]]] = [(24.0, table.predictors.get("rain_1d", table.rain_mm))]
    pairs += [
        (float(n[5:-1]), v) for n, v in table.predictors.items() if n.startswith("rain_") and n.endswith("h")
    ]
    run = np.zeros(table.days.size)
    total = np.zeros(table.days.size)
    for i in range(table.days.size):
        wet = table.rain_mm[i] > 0
        cont = i > 0 and table.days[i] - table.days[i - 1] == 86400.0
        run[i] = (run[i - 1] + 1 if cont else 1) if wet else 0
        total[i] = (total[i - 1] if cont and run[i] > 1 else 0.0) + (table.rain_mm[i] if wet else 0.0)
    for d_h, v in pairs:
        ratio = np.fmax(ratio, (v / d_h) / id_threshold_mm_h(d_h, cfg))
    dur = np.maximum(run, 1) * 24.0
    ev = np.where(run > 0, (total / dur) / (cfg.alpha * dur ** (-cfg.beta)), -np.inf)
    ratio = np.fmax(ratio, ev)
    out: dict[str, Any] = {
        "curve": f"I = {cfg.alpha:g} * D^-{cfg.beta:g}",
        "source": cfg.curve_source,
        "durations": "24 h total, N-hour maxima (hourly records), current wet-day run",
    }
    for lv, mult in zip(LEVELS, cfg.multiples.as_tuple(), strict=True):
        if mult is None:
            out[lv] = {
                "multiple": "off",
                "pod": 0.0,
                "caught": 0,
                "events": len(groups),
                "false_alarm_days_per_year": 0.0,
                "warning_days_per_year": 0.0,
            }
            continue
        fig = level_figures(ratio, float(mult), table, groups)
        fig["multiple"] = float(mult)
        fig["pod_ci95"] = list(clopper_pearson(fig["caught"], fig["events"]))
        out[lv] = fig
    return out


def in_sample(
    choice: dict[str, LevelChoice], table: DayTable, groups: list[NDArray[np.int64]]
) -> dict[str, Any]:
    return {
        lv: level_figures(ch.model.score(table), ch.threshold, table, groups) for lv, ch in choice.items()
    }


def predictor_auc(table: DayTable, models: list[Model]) -> dict[str, dict[str, Any]]:
    """ROC AUC per predictor (its raw value) and per pair model (in sample: fitted on these days)."""
    out: dict[str, dict[str, Any]] = {}
    for m in models:
        c = m.candidate
        out[c.name] = {
            "auc": auc(table, m.score(table)),
            "kind": "single" if c.kind == "total" else "pair (logistic, in sample)",
            "intercept": m.intercept,
            "coef": m.coef,
        }
    return out


def thresholds_at(models: list[Model], table: DayTable, target: float) -> dict[str, float | None]:
    years = table.years()
    return {m.candidate.name: threshold_for(m.score(table)[~table.event], years, target) for m in models}
