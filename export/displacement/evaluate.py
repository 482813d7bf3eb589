"""`evaluate displacement`: every model and rule of a run on its held-back test part, in one table.

Per model: the 1-step scores of earlier versions (``mae_mm``, ``rmse_mm``, threshold warnings
``precision/recall/f1/f2`` against ``primary_threshold_mm``, split-conformal ``interval_coverage``),
and per horizon ``horizons.<h>``: MAE, RMSE, ``skill_vs_moving_average`` (1 - MAE / MAE of the moving
average; > 0 = better), ``rmse_over_noise_floor`` (RMSE / (sqrt(2) sigma): the error of a perfect
forecast of the motion when positions carry white noise sigma; ``noise_sigma_mm`` is the RMS of the
stations' white-noise sigmas), ``coverage`` of the
distribution interval (normalised split conformal, what a bundle deploys) and ``coverage_rolling``
(rolling conformal: the last ``ROLLING_N`` residuals already observed at each origin). Warnings
(``warning``): P(K-step velocity > V within H) >= the calibration cutoff, scored as episodes
(``export.displacement.scoring``) with the Brier score and a reliability table of the probability.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import forecast_dist as fdist
from agent.features.site_series import step_seconds
from export.displacement import plots, references, scoring, store
from export.displacement.calibration import (
    normalised_residuals,
    predict_model,
    warning_label,
    warning_probability,
)
from export.displacement.dataset import Part
from export.displacement.metrics import model_metrics

log = logging.getLogger(__name__)
EVALUATION_JSON = "evaluation.json"
ROLLING_N = 60
RELIABILITY_BINS = 5


def reliability(prob: np.ndarray, label: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, Any]]:
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = []
    for k in range(bins):
        sel = (prob >= edges[k]) & ((prob < edges[k + 1]) if k < bins - 1 else (prob <= 1.0))
        out.append(
            {
                "bin": [float(edges[k]), float(edges[k + 1])],
                "count": int(sel.sum()),
                "mean_probability": float(prob[sel].mean()) if sel.any() else None,
                "observed_frequency": float(label[sel].mean()) if sel.any() else None,
            }
        )
    return out


def rolling_coverage(
    r_test: np.ndarray,
    t_test: np.ndarray,
    r_cal: np.ndarray,
    t_cal: np.ndarray,
    lag_s: float,
    step_s: float,
    nominal: float,
) -> float:
    """Coverage of a rolling conformal interval on normalised residuals of one station and horizon.

    At each test origin the interval comes from the last ``ROLLING_N`` residuals whose target was
    observed by then (calibration first, then test); at least 20 are needed, else the window is skipped.
    ``t`` is each window's first target time (origin + 1 step); its last target is ``t + lag_s``.
    """
    r_all = np.concatenate([r_cal, r_test])
    avail = np.concatenate([t_cal, t_test]) + lag_s
    order = np.argsort(avail, kind="stable")
    r_all, avail = r_all[order], avail[order]
    ok = np.isfinite(r_all)
    r_all, avail = r_all[ok], avail[ok]
    hits, n = 0, 0
    for r, t in zip(r_test, t_test, strict=True):
        if not np.isfinite(r):
            continue
        past = r_all[avail <= t - step_s][-ROLLING_N:]
        if past.size < 20:
            continue
        q = fdist.residual_quantiles(past)
        lo = fdist.quantile_at(q, (1 - nominal) / 2)
        hi = fdist.quantile_at(q, (1 + nominal) / 2)
        hits += int(lo <= r <= hi)
        n += 1
    return hits / n if n else float("nan")


def _episode_scores(
    run: dict[str, Any], tl: dict[str, np.ndarray], part: Part, warn: np.ndarray, step_s: float
) -> dict[str, Any]:
    if "tl_t" not in tl:
        return scoring.empty_scores()
    meta = run["meta"]
    per_year = 365.25 * 86400.0 / step_s
    out = []
    for i in np.unique(part.station).astype(int):
        sel = part.station == i
        on = tl["tl_station"] == i
        times, events = tl["tl_t"][on], tl["tl_event"][on].astype(bool)
        origins = np.searchsorted(times, part.t[sel] - step_s)
        w = run["meta"]["station_warnings"].get(run["stations"][i], meta["warning"])
        out.append(
            scoring.episode_scores(
                events, origins, warn[sel], int(w["horizon_steps"]), int(w["k_steps"]), per_year
            )
        )
    return scoring.pool(out, per_year)


def evaluate_run(run_dir: Path, threshold_mm: float | None = None, make_plots: bool = True) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run = store.read_displacement_run(run_dir)
    parts = store.load_parts(run_dir)
    tl = store.load_timeline(run_dir)
    test, cal = parts["test"], parts["cal"]
    meta = run["meta"]
    hs = fdist.horizons_of(meta)
    step_s = float(step_seconds(str(meta["step"])) or 86400.0)
    thr = float(meta["primary_threshold_mm"]) if threshold_mm is None else float(threshold_mm)
    nominal = float(meta["conformal_nominal"])
    halves = run["conformal_half_width_mm"]
    quantiles = run.get("residual_quantiles", {})
    label = warning_label(test, meta)
    noise = meta.get("noise", {})
    sigmas = [v["sigma_white_mm"] for v in noise.values() if v.get("sigma_white_mm") is not None]
    sigma = float(np.sqrt(np.nanmean(np.square(sigmas)))) if sigmas else float("nan")
    floor = float(np.sqrt(2.0) * sigma)
    preds: dict[str, np.ndarray] = {}
    warns: dict[str, np.ndarray] = {}
    models: dict[str, dict[str, Any]] = {}
    raw = {name: predict_model(run_dir, run, name, test) for name in run["models"]}
    ma = raw.get("moving_average", (None, None))[0]
    for name, (pred, aux) in raw.items():
        m: dict[str, Any] = {"type": run["models"][name]["type"]}
        q = quantiles.get(name)
        if pred is not None:
            preds[name] = pred
            half = halves.get(name)
            m.update(
                model_metrics(
                    test.y1, pred[:, 0], thr, float("nan") if half is None else float(half), nominal
                )
            )
            m["horizons"] = _horizon_scores(run_dir, run, name, pred, ma, test, cal, q, nominal, step_s)
            for hz in m["horizons"].values():
                hz["rmse_over_noise_floor"] = hz["rmse_mm"] / floor if floor > 0 else None
        else:
            m.update({"mae_mm": None, "rmse_mm": None, "f2": None})
        prob = warning_probability(run, name, pred, aux, test, q)
        cutoff = float(run.get("exceed_prob_cutoff", {}).get(name, 0.5))
        warn = prob >= cutoff if run["models"][name]["type"] not in references.RULES else prob > 0.5
        warns[name] = warn
        wsc = _episode_scores(run, tl, test, warn, step_s)
        if run["models"][name]["type"] not in references.RULES:
            wsc["cutoff"] = cutoff
            wsc["brier"] = float(np.mean((prob - label) ** 2)) if label.size else None
            wsc["reliability"] = reliability(prob, label.astype(np.float64))
        m["warning"] = wsc
        if run["models"][name].get("aux", False):
            m["prob_cutoff"] = cutoff
        models[name] = m
    per_station: dict[str, dict[str, float]] = {}
    for i, station in enumerate(run["stations"]):
        sel = test.station == i
        if sel.any():
            per_station[station] = {
                name: float(np.mean(np.abs(p[sel, 0] - test.y1[sel]))) for name, p in preds.items()
            } | {"test_steps": int(sel.sum())}
    chosen = run.get("export_model", "multitask")
    longest = str(max(hs))
    mt, mav = (
        models.get("multitask", {}).get("horizons", {}),
        models.get("moving_average", {}).get("horizons", {}),
    )
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "mode": run.get("mode", "train"),
        "test_steps": len(test),
        "horizons_steps": hs,
        "threshold_mm": thr,
        "threshold_definition": f"{meta.get('primary_threshold_percentile', 90)}th percentile of the "
        "training part's next-step displacement"
        if threshold_mm is None
        else "given on the command line",
        "observed_warnings": int(np.sum(test.y1 > thr)),
        "noise_sigma_mm": sigma,
        "noise_floor_rmse_mm": floor,
        "noise_per_station": noise,
        "warning_target": meta.get("station_warnings", {}),
        "episodes_per_split": {
            p: _episode_scores(run, tl, parts[p], np.zeros(len(parts[p]), bool), step_s)["episodes"]
            for p in ("fit", "cal", "test")
        },
        "chosen_model": chosen,
        "choice_rule": run.get("choice_rule", "export_model of the run"),
        "multitask_beats_moving_average": {
            h: bool(mt[h]["mae_mm"] < mav[h]["mae_mm"])
            for h in mt
            if h in mav and mt[h]["mae_mm"] is not None
        },
        "chosen_skill_vs_moving_average_longest": models.get(chosen, {})
        .get("horizons", {})
        .get(longest, {})
        .get("skill_vs_moving_average"),
        "stations": run["stations"],
        "synthetic": bool(meta.get("synthetic", False)),
        "models": models,
        "mae_per_station_mm": per_station,
    }
    result = store.jsonable(result)
    (run_dir / EVALUATION_JSON).write_text(json.dumps(result, indent=2) + "\n")
    if make_plots:
        result["plots"] = [str(p) for p in plots.plot_test(run_dir, run, test, preds, warns, tl)]
        (run_dir / EVALUATION_JSON).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _horizon_scores(
    run_dir: Path,
    run: dict[str, Any],
    name: str,
    pred: np.ndarray,
    ma: np.ndarray | None,
    test: Part,
    cal: Part,
    q: dict[str, list[float]] | None,
    nominal: float,
    step_s: float,
) -> dict[str, dict[str, Any]]:
    meta = run["meta"]
    hs = fdist.horizons_of(meta)
    scale = fdist.window_scale(test.x, meta)
    r_test = normalised_residuals(pred, test, meta)
    cal_pred, _ = predict_model(run_dir, run, name, cal)
    r_cal = normalised_residuals(cal_pred, cal, meta) if cal_pred is not None else None
    out: dict[str, dict[str, Any]] = {}
    for i, h in enumerate(hs):
        ok = np.isfinite(test.y[:, i]) & np.isfinite(pred[:, i])
        err = pred[ok, i] - test.y[ok, i]
        mae = float(np.mean(np.abs(err))) if err.size else float("nan")
        ma_mae = (
            float(np.mean(np.abs(ma[ok, i] - test.y[ok, i]))) if ma is not None and ok.any() else float("nan")
        )
        cov = float("nan")
        if q is not None and ok.any():
            lo, hi = fdist.interval(pred[ok, i], scale[ok], q[str(h)], nominal)
            cov = float(np.mean((test.y[ok, i] >= lo) & (test.y[ok, i] <= hi)))
        rolling = []
        if r_cal is not None:
            for s in np.unique(test.station):
                st, sc = test.station == s, cal.station == s
                c = rolling_coverage(
                    r_test[st, i], test.t[st], r_cal[sc, i], cal.t[sc], (h - 1) * step_s, step_s, nominal
                )
                rolling.append((int(st.sum()), c))
        valid = [(n, c) for n, c in rolling if np.isfinite(c)]
        out[str(h)] = {
            "mae_mm": mae,
            "rmse_mm": float(np.sqrt(np.mean(err**2))) if err.size else float("nan"),
            "skill_vs_moving_average": 1.0 - mae / ma_mae if ma_mae and np.isfinite(ma_mae) else None,
            "coverage": cov,
            "coverage_rolling": sum(n * c for n, c in valid) / sum(n for n, _ in valid) if valid else None,
            "coverage_nominal": nominal,
            "steps": int(ok.sum()),
        }
    return out
