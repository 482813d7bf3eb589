"""Everything fitted on the calibration part (which precedes the test part), per model:

- ``residual_quantiles[model][h]``: quantiles of the normalised signed residuals ``(y - pred) / s`` at
  horizon h (``agent.features.forecast_dist``): the predictive distribution, its intervals and its
  exceedance probabilities;
- ``conformal_half_width_mm[model]``: the plain split-conformal half-width at the first horizon (kept
  for older readers);
- ``exceed_prob_cutoff[model]``: the cutoff on P(warning) with the best day-level F2 on the
  calibration labels (grid 0.05..0.95, ties to the higher cutoff);
- ``chosen_model``: the model a bundle carries, by the rule in :data:`CHOICE_RULE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import TrainingError
from agent.features import forecast_dist as fdist
from export.displacement import references, store
from export.displacement.dataset import Part
from export.displacement.metrics import best_probability_cutoff, conformal_half_width
from export.displacement.train import predict_cnn

# candidates in order of simplicity: a more complex model must be better by more than the margin
DEPLOYABLE = (
    "moving_average",
    "linear_trend",
    "persistence",
    "single_task",
    "scratch",
    "source_only",
    "multitask",
)
CHOICE_MARGIN = 0.01
CHOICE_RULE = (
    "lowest calibration-part MAE at the longest horizon among the deployable models "
    f"{list(DEPLOYABLE)}; a later (more complex) model replaces an earlier one only when its MAE is "
    f"more than {CHOICE_MARGIN:.0%} lower"
)


def predict_model(
    run_dir: Path, run: Mapping[str, Any], name: str, part: Part
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(forecast mm (N, H) or None for a rule, auxiliary probabilities (N, K) or rule warnings (N, 1))."""
    spec = run["models"][name]
    kind = spec["type"]
    meta = run["meta"]
    if kind == "cnn":
        return predict_cnn(store.load_cnn(run_dir, spec["file"], run["arch"]), part.x)
    if kind == "gbr":
        return references.predict_gbr(store.load_pickle(run_dir, spec["file"]), part.x), None
    if kind in references.CLOSED_FORM:
        return references.closed_form(kind, part.x, meta), None
    if kind in references.RULES:
        warns = [window_warning(run, int(i)) for i in part.station]
        return None, references.rule_warnings(kind, part.x, meta, warns)[:, None]
    raise TrainingError(
        f"{run_dir}/run.json: model {name!r} has unknown type {kind!r}",
        fix="re-run the training with this version of agent-export",
    )


def window_warning(run: Mapping[str, Any], station_index: int) -> Mapping[str, Any]:
    meta = run["meta"]
    return meta["station_warnings"].get(run["stations"][station_index], meta["warning"])


def normalised_residuals(pred: np.ndarray, part: Part, meta: Mapping[str, Any]) -> np.ndarray:
    return (part.y - pred) / fdist.window_scale(part.x, meta)[:, None]


def warning_probability(
    run: Mapping[str, Any],
    name: str,
    pred: np.ndarray | None,
    aux: np.ndarray | None,
    part: Part,
    quantiles: Mapping[str, Any] | None,
) -> np.ndarray:
    """P(warning event within the horizon) (N,) of one model: its auxiliary head for a multi-task CNN,
    the rule's 0/1 for a rule, else from the model's predictive distribution."""
    spec = run["models"][name]
    meta = run["meta"]
    hs = fdist.horizons_of(meta)
    if spec["type"] in references.RULES and aux is not None:
        return aux[:, 0]
    if spec.get("aux", False) and aux is not None:
        h_max = int(meta["warning"]["horizon_steps"])
        cols = [i for i, h in enumerate(hs) if h <= h_max]
        return aux[:, cols].max(axis=1)
    if pred is None or quantiles is None:
        return np.zeros(len(part))
    out = np.zeros(len(part))
    m = {**meta, "residual_quantiles": quantiles}
    for i in np.unique(part.station).astype(int):
        sel = part.station == i
        out[sel] = fdist.warning_probability(pred[sel], part.x[sel], m, window_warning(run, i))
    return out


def warning_label(part: Part, meta: Mapping[str, Any]) -> np.ndarray:
    """Day label (N,): an event within the warning horizon."""
    hs = fdist.horizons_of(meta)
    h_max = int(meta["warning"]["horizon_steps"])
    col = max(i for i, h in enumerate(hs) if h <= h_max)
    return part.event[:, col] > 0.5


def choose_model(cal_mae_longest: Mapping[str, float]) -> str:
    best = ""
    for name in DEPLOYABLE:
        mae = cal_mae_longest.get(name)
        if mae is None or not np.isfinite(mae):
            continue
        if not best or mae < cal_mae_longest[best] * (1.0 - CHOICE_MARGIN):
            best = name
    return best or "moving_average"


def calibrate(run_dir: Path, run: dict[str, Any], cal: Part) -> None:
    """Fit every model's calibration quantities on ``cal``, choose the bundle model, fill ``run``."""
    meta = run["meta"]
    nominal = float(meta["conformal_nominal"])
    hs = fdist.horizons_of(meta)
    label = warning_label(cal, meta)
    halves: dict[str, float] = {}
    cutoffs: dict[str, float] = {}
    quantiles: dict[str, dict[str, list[float]]] = {}
    cal_mae: dict[str, dict[str, float]] = {}
    for name in run["models"]:
        pred, aux = predict_model(run_dir, run, name, cal)
        q = None
        if pred is not None:
            r = normalised_residuals(pred, cal, meta)
            q = {str(h): fdist.residual_quantiles(r[:, i]) for i, h in enumerate(hs)}
            quantiles[name] = q
            halves[name] = conformal_half_width(np.abs(pred[:, 0] - cal.y1), nominal)
            err = np.abs(pred - cal.y)
            cal_mae[name] = {str(h): float(np.nanmean(err[:, i])) for i, h in enumerate(hs)}
        prob = warning_probability(run, name, pred, aux, cal, q)
        if run["models"][name]["type"] not in references.RULES:
            cutoffs[name] = best_probability_cutoff(label.astype(np.float64), prob, 0.5)
    longest = str(max(hs))
    chosen = run.get("export_model_override") or choose_model({k: v[longest] for k, v in cal_mae.items()})
    run["conformal_half_width_mm"] = halves
    run["exceed_prob_cutoff"] = cutoffs
    run["residual_quantiles"] = quantiles
    run["calibration_mae_mm"] = cal_mae
    run["export_model"] = chosen
    run["choice_rule"] = CHOICE_RULE
    meta["conformal_half_width_mm"] = halves[chosen]
    meta["exceed_prob_cutoff"] = cutoffs.get(chosen, 0.5)
    meta["residual_quantiles"] = quantiles[chosen]
    meta["quantile_levels"] = list(fdist.QUANTILE_LEVELS)
    meta["warning_source"] = "head" if run["models"][chosen].get("aux", False) else "distribution"
    meta["model_variant"] = chosen
