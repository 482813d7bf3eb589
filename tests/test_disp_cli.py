"""Tiny end-to-end runs through the CLI: synth -> train -> evaluate -> finetune -> evaluate -> load_run."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from export.displacement.cli import register
from export.groups import Groups
from export.run_loader import load_run

torch.set_num_threads(1)
MODEL_KEYS = {"mae_mm", "rmse_mm", "precision", "recall", "f1", "f2", "interval_coverage", "interval_nominal"}


def _app() -> typer.Typer:
    """A fresh app with the same group layout as export.cli, holding only this area's commands."""

    def t(name: str) -> typer.Typer:
        return typer.Typer(name=name, no_args_is_help=True)

    groups = Groups(**{f.name: t(f.name.split("_")[-1]) for f in fields(Groups)})
    data = t("data")
    data.add_typer(groups.data_import)
    data.add_typer(groups.data_synth)
    groups.app.add_typer(data)
    for g in (groups.train, groups.evaluate, groups.predict):
        groups.app.add_typer(g)
    register(groups)
    return groups.app


APP = _app()
RUNNER = CliRunner()


def _ok(*args: str) -> str:
    res = RUNNER.invoke(APP, list(args))
    assert res.exit_code == 0, res.output
    return res.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("disp")
    for seed, st in ((1, "S1"), (2, "S2"), (3, "S3")):
        _ok(
            "data",
            "synth",
            "series",
            "--out",
            str(d / f"{st}.csv"),
            "--days",
            "300",
            "--seed",
            str(seed),
            "--station",
            st,
        )
    _ok(
        "train",
        "displacement",
        str(d / "S1.csv"),
        str(d / "S2.csv"),
        "--out",
        str(d / "run"),
        "--epochs",
        "8",
        "--gbr-estimators",
        "10",
        "--seed",
        "5",
    )
    return d


def test_train_evaluate_json_contract(trained: Path) -> None:
    out = _ok("evaluate", "displacement", str(trained / "run"), "--json")
    r = json.loads(out)
    assert r["test_steps"] > 50 and r["threshold_mm"] > 0 and r["synthetic"] is True
    assert r["noise_sigma_mm"] > 0 and r["horizons_steps"] == [1, 3, 7]
    run = json.loads((trained / "run/run.json").read_text())
    assert r["chosen_model"] == run["export_model"] == run["meta"]["model_variant"]
    assert set(r["episodes_per_split"]) == {"fit", "cal", "test"}
    for name in ("multitask", "single_task", "persistence", "gbr", "moving_average", "linear_trend"):
        m = r["models"][name]
        assert set(m) >= MODEL_KEYS, name
        assert 0.0 <= m["interval_coverage"] <= 1.0 and m["interval_nominal"] == 0.9
        assert m["mae_mm"] == pytest.approx(m["horizons"]["1"]["mae_mm"])
        for h in ("1", "3", "7"):
            assert set(m["horizons"][h]) >= {"mae_mm", "rmse_mm", "skill_vs_moving_average", "coverage"}
            assert 0.0 <= m["horizons"][h]["coverage"] <= 1.0
        assert set(m["warning"]) >= {"episodes", "episodes_caught", "false_alarm_days_per_year", "f2"}
        assert (
            m["warning"]["episodes_caught"]
            <= m["warning"]["episodes"]
            == r["models"]["persistence"]["warning"]["episodes"]
        )
        assert 0.0 <= m["warning"]["brier"] <= 1.0
    assert r["models"]["moving_average"]["horizons"]["7"]["skill_vs_moving_average"] == 0.0
    for rule in ("velocity_threshold", "inverse_velocity"):
        assert r["models"][rule]["mae_mm"] is None and "f2" in r["models"][rule]["warning"]
    assert run["kind"] == "displacement" and run["meta"]["conformal_half_width_mm"] > 0
    assert 0.05 <= run["meta"]["exceed_prob_cutoff"] <= 0.95
    assert r["models"]["multitask"]["prob_cutoff"] == run["exceed_prob_cutoff"]["multitask"]
    assert (trained / "run/evaluation.json").is_file()
    assert (trained / "run/plot_S1.png").stat().st_size > 10_000
    human = _ok("evaluate", "displacement", str(trained / "run"), "--no-plots")
    assert "multitask" in human and "persistence" in human


def test_training_is_deterministic(trained: Path) -> None:
    _ok(
        "train",
        "displacement",
        str(trained / "S1.csv"),
        str(trained / "S2.csv"),
        "--out",
        str(trained / "run2"),
        "--epochs",
        "8",
        "--gbr-estimators",
        "10",
        "--seed",
        "5",
    )
    a = torch.load(trained / "run/multitask.pt", weights_only=True)
    b = torch.load(trained / "run2/multitask.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_three_way(trained: Path) -> None:
    _ok(
        "finetune",
        str(trained / "run"),
        str(trained / "S3.csv"),
        "--steps",
        "90",
        "--out",
        str(trained / "ft"),
        "--stage1-epochs",
        "5",
        "--stage2-epochs",
        "5",
    )
    r = json.loads(_ok("evaluate", "displacement", str(trained / "ft"), "--json", "--no-plots"))
    assert {"multitask", "source_only", "scratch", "persistence", "moving_average"} <= set(r["models"])
    assert r["models"]["scratch"]["horizons"]["7"]["mae_mm"] > 0
    assert r["stations"] == ["S3"]
    ft = json.loads((trained / "ft/run.json").read_text())
    assert ft["mode"] == "finetune" and ft["adaptation_steps"] == 90
    # the test part is strictly after the 90 adaptation steps
    with np.load(trained / "ft/windows.npz") as w:
        assert w["test_t"].min() > w["cal_t"].max() > w["fit_t"].max()
    src = torch.load(trained / "run/multitask.pt", weights_only=True)
    so = torch.load(trained / "ft/source_only.pt", weights_only=True)
    tuned = torch.load(trained / "ft/multitask.pt", weights_only=True)
    assert all(torch.equal(src[k], so[k]) for k in src)
    assert not torch.equal(src["conv1.weight"], tuned["conv1.weight"])  # stage 2 moved the extractor


def test_load_run_for_export(trained: Path) -> None:
    loaded = load_run(trained / "run")
    (m,) = loaded.models
    assert (m.name, m.task) == ("displacement", "displacement_forecast")
    assert m.input_names == ["window"] and m.output_names == ["displacement_mm", "exceed_prob"]
    x = m.calibration_inputs["window"]
    f, w = len(m.meta["feature_names"]), m.meta["window"]
    assert x.dtype == np.float32 and x.shape[1:] == (f, w) and x.shape[0] >= 50
    assert "S1" in m.calibration_description and "SYNTHETIC" in m.calibration_description
    assert not m.module.training
    assert m.meta["horizons_steps"] == [1, 3, 7] and m.meta["model_variant"] == loaded_variant(trained)
    with torch.no_grad():
        out = m.module(torch.from_numpy(m.test_inputs["window"][:4]))
    disp = out[0] if isinstance(out, tuple) else out
    assert disp.shape == (4, 3)
    assert m.test_targets["displacement_mm"].shape == (m.test_inputs["window"].shape[0], 3)
    assert np.isfinite(m.test_targets["displacement_mm"]).all()


def loaded_variant(trained: Path) -> str:
    return str(json.loads((trained / "run/run.json").read_text())["export_model"])


def test_bundle_model_override_and_reference_export(trained: Path) -> None:
    """--export-model moving_average: the bundle carries the moving average as a one-output graph."""
    _ok(
        "train",
        "displacement",
        str(trained / "S1.csv"),
        str(trained / "S2.csv"),
        "--out",
        str(trained / "ma"),
        "--epochs",
        "2",
        "--gbr-estimators",
        "5",
        "--export-model",
        "moving_average",
        "--horizons",
        "1,7",
    )
    (m,) = load_run(trained / "ma").models
    assert m.output_names == ["displacement_mm"] and m.meta["model_variant"] == "moving_average"
    assert m.meta["warning_source"] == "distribution" and set(m.meta["residual_quantiles"]) == {"1", "7"}
    x = m.test_inputs["window"][:5]
    with torch.no_grad():
        got = m.module(torch.from_numpy(x)).numpy()
    v = x[:, 0, :] * m.meta["norm_std"][0] + m.meta["norm_mean"][0]
    np.testing.assert_allclose(got, v.mean(axis=1)[:, None] * np.array([1.0, 7.0]), rtol=1e-4, atol=1e-4)


@pytest.mark.faults
def test_cli_errors_are_clear(tmp_path: Path, trained: Path) -> None:
    res = RUNNER.invoke(
        APP, ["train", "displacement", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2 and "not found" in res.output and "fix:" in res.output
    res = RUNNER.invoke(
        APP,
        [
            "finetune",
            str(trained / "run"),
            str(trained / "S3.csv"),
            "--steps",
            "5000",
            "--out",
            str(tmp_path / "f"),
        ],
    )
    assert res.exit_code == 2 and "--steps" in res.output
    res = RUNNER.invoke(APP, ["evaluate", "displacement", str(tmp_path)])
    assert res.exit_code == 2 and "run.json" in res.output


def test_train_with_common_split_date(trained: Path) -> None:
    _ok(
        "train",
        "displacement",
        str(trained / "S1.csv"),
        str(trained / "S2.csv"),
        "--out",
        str(trained / "cd"),
        "--epochs",
        "2",
        "--gbr-estimators",
        "5",
        "--test-from",
        "2020-09-01",
    )
    run = json.loads((trained / "cd/run.json").read_text())
    assert run["test_from"] == "2020-09-01T00:00:00Z" and run["train_fraction"] is None
    with np.load(trained / "cd/windows.npz") as w:
        assert w["cal_t"].max() < w["test_t"].min()
