"""Rolling-origin and leave-one-station-out evaluation of the displacement forecast (docs/displacement.md).

    .venv/bin/python bench/eval_displacement_cv.py [WORK_DIR] [--epochs 60] [--gbr 60]

Salmon Falls, five stations, imported from ../shared/data as a user would (`agent-export data import
pbo`). Everything goes through the toolchain's own functions (train_run, finetune_run, evaluate_run).

- rolling origin: for each origin date D, train on every station's data before D (``--test-from D``:
  no station's training part reaches the test period), then score the test windows whose origin lies in
  [D, D + BLOCK_DAYS): per station, the chosen model's and the moving average's MAE at each horizon;
- leave one station out: the source model is trained on the other four stations cut at the end of the
  target's adaptation days (no source data from the target's test period), then `finetune` on the
  target's first N days; fine-tuned vs scratch vs source-only vs moving average on the target's test part.

Writes WORK_DIR/cv.json (every number) and prints a summary. A SINGLE seed (0) and shortened training
(CPU budget); the spread reported is over stations and origins, not seeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.errors import TrainingError  # noqa: E402
from agent.features.site_series import parse_iso, read_site_series, to_iso, write_site_series  # noqa: E402
from export.data.pbo import import_pbo  # noqa: E402
from export.displacement import store  # noqa: E402
from export.displacement.calibration import predict_model  # noqa: E402
from export.displacement.evaluate import evaluate_run  # noqa: E402
from export.displacement.finetune import finetune_run  # noqa: E402
from export.displacement.pipeline import train_run  # noqa: E402

STATIONS = ("BASE", "BLKM", "BLOK", "MIDB", "NTOE")
ORIGINS = ("2017-09-01", "2017-11-01", "2018-01-01", "2018-03-01")
BLOCK_DAYS = 60
# adaptation days per target: enough complete windows for fine-tune + calibration despite GNSS gaps
FEW_SHOT_STEPS = {"BASE": 90, "BLKM": 150, "BLOK": 330, "MIDB": 210, "NTOE": 120}
DAY = 86400.0


def import_all(shared: Path, work: Path) -> dict[str, Path]:
    d = shared / "salmon-falls-gnss-hydro"
    out = {}
    for st in STATIONS:
        s = import_pbo(
            d / f"gps/{st}.pbo.nam08.csv",
            d / "water/NOAA_Castleford_daily.txt",
            groundwater_csv=d / "water/well.csv",
        )
        out[st] = write_site_series(s, work / f"{st}.csv")
    return out


def block_scores(run_dir: Path, t0: float, t1: float) -> dict[str, Any]:
    """Per station: MAE per horizon of every forecasting model on test windows with origin in [t0, t1)."""
    run = store.read_displacement_run(run_dir)
    test = store.load_parts(run_dir)["test"]
    origin = test.t - DAY
    sel_block = (origin >= t0) & (origin < t1)
    hs = run["meta"]["horizons_steps"]
    preds = {}
    for name in run["models"]:
        pred, _ = predict_model(run_dir, run, name, test)
        if pred is not None:
            preds[name] = pred
    out: dict[str, Any] = {}
    for i, st in enumerate(run["stations"]):
        sel = sel_block & (test.station == i)
        if sel.sum() < 10:
            continue
        out[st] = {"windows": int(sel.sum())}
        for name, p in preds.items():
            out[st][name] = {
                str(h): float(np.nanmean(np.abs(p[sel, j] - test.y[sel, j]))) for j, h in enumerate(hs)
            }
    return out


def rolling_origin(csvs: dict[str, Path], work: Path, epochs: int, gbr: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for d in ORIGINS:
        t0 = parse_iso(d)
        rd = work / f"ro_{d}"
        run = train_run(list(csvs.values()), rd, test_from=t0, seed=0, epochs=epochs, gbr_estimators=gbr)
        ev = evaluate_run(rd, make_plots=False)
        res[d] = {
            "chosen_model": run["export_model"],
            "calibration_mae_mm": run["calibration_mae_mm"],
            "episodes_per_split": ev["episodes_per_split"],
            "noise_sigma_mm": ev["noise_sigma_mm"],
            "warning": {k: ev["models"][k]["warning"] for k in ev["models"]},
            "block": block_scores(rd, t0, t0 + BLOCK_DAYS * DAY),
        }
        logging.info("origin %s: chosen %s", d, run["export_model"])
    return res


def loso(csvs: dict[str, Path], work: Path, epochs: int, gbr: int) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for target in STATIONS:
        steps = FEW_SHOT_STEPS[target]
        tgt = read_site_series(csvs[target])
        cut = float(tgt.times[steps])
        sources = []
        for st in STATIONS:
            if st == target:
                continue
            s = read_site_series(csvs[st])
            n = int(np.searchsorted(s.times, cut))
            y = s.slice(0, n)
            y.meta["note"] = f"truncated before {to_iso(cut)}"
            y.repairs = {}
            sources.append(write_site_series(y, work / f"pre_{target}_{st}.csv"))
        src = work / f"src_{target}"
        train_run(sources, src, train_fraction=0.85, seed=0, epochs=epochs, gbr_estimators=gbr)
        ft = work / f"ft_{target}"
        try:
            finetune_run(src, csvs[target], steps, ft, stage1_epochs=epochs // 2, stage2_epochs=epochs // 2)
        except TrainingError as exc:  # too few complete windows in the adaptation days: say so
            res[target] = {"adaptation_steps": steps, "refused": exc.message}
            logging.warning("LOSO %s refused: %s", target, exc.message)
            continue
        ev = evaluate_run(ft, make_plots=False)
        res[target] = {
            "adaptation_steps": steps,
            "cut": to_iso(cut),
            "test_steps": ev["test_steps"],
            "episodes_test": ev["episodes_per_split"]["test"],
            "models": {
                k: {
                    "horizons": m.get("horizons"),
                    "warning": {
                        x: m["warning"].get(x)
                        for x in ("episodes", "episodes_caught", "false_alarm_days_per_year", "f2")
                    },
                }
                for k, m in ev["models"].items()
            },
        }
        logging.info("LOSO %s done", target)
    return res


def summarise(cv: dict[str, Any]) -> dict[str, Any]:
    """Cells (origin x station) where the chosen model beats the moving average at 7 days; LOSO spread."""
    cells = []
    for d, r in cv["rolling_origin"].items():
        chosen = r["chosen_model"]
        for st, s in r["block"].items():
            c, ma = s[chosen]["7"], s["moving_average"]["7"]
            mt = s.get("multitask", {}).get("7")
            cells.append(
                {
                    "origin": d,
                    "station": st,
                    "chosen": chosen,
                    "chosen_mae": c,
                    "ma_mae": ma,
                    "multitask_mae": mt,
                }
            )
    skill = np.array([1 - c["chosen_mae"] / c["ma_mae"] for c in cells])
    mt_skill = np.array(
        [1 - c["multitask_mae"] / c["ma_mae"] for c in cells if c["multitask_mae"] is not None]
    )
    loso_skill: dict[str, list[float]] = {}
    for _t, r in cv["loso"].items():
        if "refused" in r:
            continue
        ma = r["models"]["moving_average"]["horizons"]["7"]["mae_mm"]
        for k in ("multitask", "scratch", "source_only", "linear_trend", "persistence"):
            if k in r["models"] and r["models"][k]["horizons"]:
                loso_skill.setdefault(k, []).append(1 - r["models"][k]["horizons"]["7"]["mae_mm"] / ma)
    return {
        "rolling_cells": len(cells),
        "chosen_beats_ma_7d_cells": int(np.sum(skill > 0)),
        "chosen_skill_7d_mean": float(skill.mean()) if skill.size else None,
        "chosen_skill_7d_std": float(skill.std()) if skill.size else None,
        "multitask_beats_ma_7d_cells": int(np.sum(mt_skill > 0)),
        "multitask_skill_7d_mean": float(mt_skill.mean()) if mt_skill.size else None,
        "multitask_skill_7d_std": float(mt_skill.std()) if mt_skill.size else None,
        "loso_skill_7d": {
            k: {
                "mean": float(np.mean(v)),
                "std": float(np.std(v)),
                "n": len(v),
                "beats_ma": int(np.sum(np.array(v) > 0)),
            }
            for k, v in loso_skill.items()
        },
        "cells": cells,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", nargs="?", default=str(REPO / "runs" / "displacement-cv"))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--gbr", type=int, default=60)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--reuse-rolling", action="store_true", help="keep the rolling-origin part of cv.json")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    csvs = import_all(Path(a.shared), work)
    cv: dict[str, Any] = {"epochs": a.epochs, "gbr_estimators": a.gbr, "seed": 0}
    if a.reuse_rolling and (work / "cv.json").is_file():
        cv["rolling_origin"] = json.loads((work / "cv.json").read_text())["rolling_origin"]
    else:
        cv["rolling_origin"] = rolling_origin(csvs, work, a.epochs, a.gbr)
    (work / "cv.json").write_text(json.dumps(store.jsonable(cv), indent=2))
    cv["loso"] = loso(csvs, work, a.epochs, a.gbr)
    cv["summary"] = summarise(cv)
    (work / "cv.json").write_text(json.dumps(store.jsonable(cv), indent=2))
    print(json.dumps(store.jsonable({k: v for k, v in cv["summary"].items() if k != "cells"})))


if __name__ == "__main__":
    main()
