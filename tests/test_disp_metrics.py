"""Metrics and split-conformal intervals."""

from __future__ import annotations

import numpy as np
import pytest

from export.displacement.metrics import (
    best_probability_cutoff,
    conformal_half_width,
    f_beta,
    model_metrics,
    probability_metrics,
    warning_scores,
)


def test_conformal_rank_and_coverage_on_exchangeable_data() -> None:
    r = np.arange(1.0, 20.0)  # 19 residuals: ceil(20 * 0.9) = 18th smallest
    assert conformal_half_width(r, 0.9) == 18.0
    assert conformal_half_width(np.array([1.0, 2.0]), 0.9) == 2.0  # too few points: max, logged
    # marginal guarantee: averaged over calibration draws, coverage is >= nominal (and not much more)
    rng = np.random.default_rng(0)
    cover = []
    for _ in range(300):
        q = conformal_half_width(np.abs(rng.normal(size=50)), 0.9)
        cover.append(np.mean(np.abs(rng.normal(size=200)) <= q))
    assert 0.9 <= float(np.mean(cover)) < 0.93


def test_warning_scores_and_fbeta() -> None:
    y = np.array([0.0, 3.0, 3.0, 0.0, 3.0])
    s = warning_scores(y, np.array([True, True, False, False, True]), threshold=1.0)
    assert (s["tp"], s["fp"], s["fn"]) == (2, 1, 1)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert f_beta(0.5, 1.0, 2.0) == pytest.approx(5 * 0.5 / (4 * 0.5 + 1))
    none = warning_scores(y, np.zeros(5, bool), 1.0)
    assert none["precision"] == 0.0 and none["fn"] == 3


def test_model_metrics_values() -> None:
    y = np.array([0.0, 1.0, 2.0, 4.0])
    pred = np.array([0.5, 1.0, 1.0, 4.0])
    m = model_metrics(y, pred, threshold=2.0, half_width=0.6, nominal=0.9)
    assert m["mae_mm"] == pytest.approx(1.5 / 4)
    assert m["rmse_mm"] == pytest.approx(np.sqrt(1.25 / 4))
    assert m["interval_coverage"] == pytest.approx(0.75)
    assert m["near_threshold_steps"] == 2  # observed 1.0 and 2.0 lie in [1, 3]
    assert m["mae_near_threshold_mm"] == pytest.approx(0.5)
    assert np.isnan(model_metrics(y, pred, 2.0, float("nan"), 0.9)["interval_coverage"])


def test_probability_cutoff_is_chosen_for_f2() -> None:
    y = np.array([0.0, 0.0, 0.0, 3.0, 3.0, 0.0])
    prob = np.array([0.05, 0.12, 0.22, 0.33, 0.36, 0.02])
    c = best_probability_cutoff(y, prob, threshold=1.0)
    assert c == 0.3  # 0.25 and 0.3 both catch both without the 0.22 false alarm; ties go up
    m = probability_metrics(y, prob, 1.0, c)
    assert m["prob_recall"] == 1.0 and m["prob_precision"] == 1.0 and m["prob_cutoff"] == c
    assert best_probability_cutoff(np.zeros(4), np.ones(4), 1.0) == 0.5
