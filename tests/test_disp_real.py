"""Salmon Falls end to end (real data): import, train, evaluate, few-shot on a held-out station."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agent.features.site_series import write_site_series
from export.data.pbo import import_pbo
from export.displacement.evaluate import evaluate_run
from export.displacement.finetune import finetune_run
from export.displacement.pipeline import train_run

torch.set_num_threads(1)
STATIONS = ("BASE", "BLKM", "BLOK", "MIDB", "NTOE")


@pytest.fixture(scope="module")
def salmon_falls(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = shared_data / "salmon-falls-gnss-hydro"
    out = tmp_path_factory.mktemp("sf")
    paths = {}
    for st in STATIONS:
        s = import_pbo(
            d / f"gps/{st}.pbo.nam08.csv",
            d / "water/NOAA_Castleford_daily.txt",
            groundwater_csv=d / "water/well.csv",
        )
        paths[st] = write_site_series(s, out / f"{st}.csv")
    return paths


def test_all_models_side_by_side_on_salmon_falls(salmon_falls: dict[str, Path], tmp_path: Path) -> None:
    run = train_run(list(salmon_falls.values()), tmp_path / "run", seed=0, epochs=30, gbr_estimators=40)
    assert run["meta"]["feature_names"][:5] == [
        "velocity_mm",
        "rain_mm",
        "rain_sum_3",
        "rain_sum_7",
        "rain_sum_30",
    ]
    assert "groundwater_m" in run["meta"]["feature_names"]
    r = evaluate_run(tmp_path / "run", make_plots=False)
    assert r["test_steps"] > 150 and 0.5 < r["threshold_mm"] < 5.0
    m = r["models"]
    assert m["multitask"]["mae_mm"] < m["persistence"]["mae_mm"]
    for name in ("multitask", "single_task", "gbr", "persistence"):
        assert 0.8 <= m[name]["interval_coverage"] <= 0.99, (name, m[name]["interval_coverage"])
    saved = json.loads((tmp_path / "run/evaluation.json").read_text())
    assert saved["models"]["gbr"]["mae_mm"] == pytest.approx(m["gbr"]["mae_mm"])


def test_few_shot_on_held_out_station(salmon_falls: dict[str, Path], tmp_path: Path) -> None:
    sources = [p for st, p in salmon_falls.items() if st != "NTOE"]
    train_run(sources, tmp_path / "src", seed=0, epochs=20, gbr_estimators=20)
    ft = finetune_run(
        tmp_path / "src", salmon_falls["NTOE"], 120, tmp_path / "ft", stage1_epochs=20, stage2_epochs=20
    )
    assert ft["stations"] == ["NTOE"] and ft["windows"]["test"] > 150
    r = evaluate_run(tmp_path / "ft", make_plots=False)
    assert {"multitask", "source_only", "scratch"} <= set(r["models"])
    assert all(r["models"][k]["mae_mm"] < 3.0 for k in ("multitask", "source_only", "scratch"))
