"""Threshold calibration on a day table: candidates, logistic fits, thresholds at target false-alarm rates.

Candidates: each predictor alone (a threshold on its value; its one-variable logistic model gives the
probability shown with it, a monotone map, so the same days are flagged) and each pair of predictors (a
logistic model of the daily landslide probability, the Sitka method of Patton et al. 2023; the threshold
is on the probability). Fitting is scikit-learn's ``LogisticRegression`` on standardised predictors;
coefficients are returned on the raw (mm) scale.

A threshold for a target of F false-alarm days per year is the lowest one that flags at most
floor(F * years) non-landslide days (midway between the two scores around that rank).
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.errors import RainCatalogueError
from export.rain.table import DayTable

LEVELS: tuple[str, ...] = ("advisory", "watch", "warning")
DEFAULT_TARGETS: dict[str, float] = {"advisory": 3.0, "watch": 1.0, "warning": 0.3}


@dataclass(frozen=True)
class Candidate:
    predictors: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.predictors[0] if len(self.predictors) == 1 else f"logistic({', '.join(self.predictors)})"

    @property
    def kind(self) -> str:
        return "total" if len(self.predictors) == 1 else "probability"


@dataclass(frozen=True)
class Model:
    candidate: Candidate
    intercept: float
    coef: dict[str, float]

    def probability(self, table: DayTable) -> NDArray[np.float64]:
        z = np.full(table.days.size, self.intercept)
        for name, b in self.coef.items():
            z = z + b * table.predictors[name]
        return 1.0 / (1.0 + np.exp(-np.clip(z, -700, 700)))

    def score(self, table: DayTable) -> NDArray[np.float64]:
        if self.candidate.kind == "total":
            return table.predictors[self.candidate.predictors[0]]
        return self.probability(table)


@dataclass(frozen=True)
class LevelChoice:
    level: str
    model: Model
    threshold: float | None  # None: no threshold meets the target (the level stays off)
    target: float


def candidates(names: list[str], pairs: bool = True) -> list[Candidate]:
    out = [Candidate((n,)) for n in names]
    if pairs:
        out += [Candidate(p) for p in itertools.combinations(names, 2)]
    return out


def fit(
    candidate: Candidate, table: DayTable, probability: bool = True, warm: dict[str, Any] | None = None
) -> Model:
    """Logistic regression of the landslide flag on the candidate's predictors (usable days only).

    A single predictor is graded on its value; ``probability=False`` skips its fit (LOEO folds).
    ``warm`` keeps one estimator per candidate so that refits (LOEO folds) start from the last solution."""
    from sklearn.linear_model import LogisticRegression

    if candidate.kind == "total" and not probability:
        return Model(candidate, math.nan, {})

    x = np.column_stack([table.predictors[n] for n in candidate.predictors])
    y = table.event.astype(int)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    if y.min() == y.max():
        raise RainCatalogueError(
            "the table holds one class only", fix="the table needs landslide and dry days"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = warm.get(candidate.name) if warm is not None else None
        if lr is None:
            lr = LogisticRegression(C=1.0, max_iter=500, warm_start=warm is not None)
        lr.fit((x - mu) / sd, y)
        if warm is not None:
            warm[candidate.name] = lr
    b = lr.coef_[0] / sd
    b0 = float(lr.intercept_[0] - np.sum(lr.coef_[0] * mu / sd))
    return Model(candidate, b0, {n: float(v) for n, v in zip(candidate.predictors, b, strict=True)})


def threshold_for(
    nonevent_scores: NDArray[np.float64], years: float, target: float, presorted: bool = False
) -> float | None:
    """Lowest threshold flagging at most floor(target*years) of these non-landslide days."""
    s = nonevent_scores if presorted else np.sort(nonevent_scores[np.isfinite(nonevent_scores)])[::-1]
    k = math.floor(target * years + 1e-9)
    if s.size == 0:
        return None
    if k >= s.size:
        return float(s[-1])
    above = s[k]  # the (k+1)-th highest must stay below the threshold
    higher = s[:k][s[:k] > above]
    if higher.size == 0:
        return _nudge(float(above))
    return float((higher[-1] + above) / 2.0)


def _nudge(x: float) -> float:
    return float(np.nextafter(x, np.inf)) if x != 0 else 1e-9


def event_groups(table: DayTable, gap_days: int = 2) -> list[NDArray[np.int64]]:
    """Landslide days grouped into events: days at most ``gap_days`` apart belong to the same storm."""
    idx = np.flatnonzero(table.event)
    groups: list[list[int]] = []
    for i in idx.tolist():
        if groups and (table.days[i] - table.days[groups[-1][-1]]) <= gap_days * 86400.0 + 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [np.array(g, dtype=np.int64) for g in groups]


def caught(
    score: NDArray[np.float64], thr: float | None, groups: list[NDArray[np.int64]]
) -> NDArray[np.bool_]:
    """Per event: does any of its days reach the threshold?"""
    if thr is None or not groups:
        return np.zeros(len(groups), dtype=bool)
    idx = np.concatenate(groups)
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]])
    return np.logical_or.reduceat(score[idx] >= thr, starts)


def flagged_days(score: NDArray[np.float64], thr: float | None, mask: NDArray[np.bool_]) -> int:
    return 0 if thr is None else int(np.sum((score >= thr) & mask))


def choose_levels(
    table: DayTable, models: list[Model], targets: dict[str, float], groups: list[NDArray[np.int64]]
) -> dict[str, LevelChoice]:
    """Per level: the model catching most events at its target false-alarm rate (ties: fewer warning days,
    then the simpler model)."""
    years = table.years()
    nonevent = ~table.event
    best: dict[str, tuple[tuple[float, float, int], LevelChoice]] = {}
    for m in models:
        s = m.score(table)
        ranked = np.sort(s[nonevent][np.isfinite(s[nonevent])])[::-1]
        for level in LEVELS:
            thr = threshold_for(ranked, years, targets[level], presorted=True)
            if thr is None:
                continue
            key = (
                float(caught(s, thr, groups).sum()),
                -flagged_days(s, thr, nonevent),
                -len(m.candidate.predictors),
            )
            if level not in best or key > best[level][0]:
                best[level] = (key, LevelChoice(level, m, thr, targets[level]))
    return {lv: best[lv][1] if lv in best else LevelChoice(lv, models[0], None, targets[lv]) for lv in LEVELS}


def auc(table: DayTable, score: NDArray[np.float64]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(table.event.astype(int), score))
