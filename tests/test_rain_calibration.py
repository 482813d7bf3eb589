"""`agent-export calibrate rain`: thresholds at target false-alarm rates, LOEO, intervals, TOML output.

The catalogue here is SYNTHETIC (gamma-distributed daily rain, landslides on the wettest 3-day spells)
so that the right answer is known; the real Cubatão run is in docs/rain-thresholds.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from agent.warning.settings import WarningSettings
from export.rain.calibrate import threshold_for
from export.rain.validate import MIN_EVENTS_FOR_SKILL, clopper_pearson, skill_statement


def _catalogue(tmp_path: Path, years: int = 8, events: int = 14, seed: int = 3) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    n = 365 * years
    mm = np.where(rng.random(n) < 0.4, rng.gamma(0.8, 12.0, n), 0.0)
    three = np.convolve(mm, np.ones(3))[:n]
    days = np.datetime64("2010-01-01") + np.arange(n)
    order = np.argsort(three[20:])[::-1] + 20
    chosen: list[int] = []
    for i in order:  # the wettest 3-day spells, at least a week apart, one landslide day each
        if all(abs(int(i) - j) > 7 for j in chosen):
            chosen.append(int(i))
        if len(chosen) == events:
            break
    rain = tmp_path / "rain.csv"
    rain.write_text("time,mm\n" + "".join(f"{d},{v:.1f}\n" for d, v in zip(days, mm, strict=True)))
    ls = tmp_path / "landslides.csv"
    ls.write_text("date,count\n" + "".join(f"{days[i]},{1 + i % 3}\n" for i in sorted(chosen)))
    return rain, ls


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "export.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_calibrate_cli_on_a_long_catalogue(tmp_path: Path) -> None:
    rain, ls = _catalogue(tmp_path)
    table = tmp_path / "table.csv"
    imp = _cli(
        "data", "import", "rain-catalogue", "--rain", str(rain), "--landslides", str(ls), "--out", str(table)
    )
    assert imp.returncode == 0, imp.stderr
    assert "daily record detected" in imp.stderr
    out = tmp_path / "thresholds.toml"
    cal = _cli(
        "calibrate",
        "rain",
        str(table),
        "--out",
        str(out),
        "--json",
        "--site",
        "hill",
        "--predictors",
        "rain_1d,rain_3d,ante_7d",
        "--summary-out",
        str(tmp_path / "summary.json"),
    )
    assert cal.returncode == 0, cal.stderr
    summary = json.loads(cal.stdout.strip().splitlines()[-1])
    assert summary["events"] == 14 and summary["years"] == pytest.approx((8 * 365 - 14) / 365.25)
    assert set(summary["predictors"]) >= {"rain_1d", "rain_3d", "ante_7d", "logistic(rain_1d, rain_3d)"}
    assert summary["predictors"]["rain_3d"]["auc"] > 0.95  # the events were put on the wettest 3-day spells
    assert summary["predictors"]["rain_3d"]["auc"] > summary["predictors"]["ante_7d"]["auc"]
    targets = {"advisory": 3.0, "watch": 1.0, "warning": 0.3}
    for lv, target in targets.items():
        f = summary["levels"][lv]
        assert {"pod", "false_alarm_days_per_year", "warning_days_per_year", "threshold", "predictor"} <= set(
            f
        )
        assert f["in_sample"]["false_alarm_days_per_year"] <= target + 1e-9
        assert 0 <= f["pod"] <= 1 and f["pod_ci95"][0] <= f["pod"] <= f["pod_ci95"][1]
        assert f["caught"] == round(f["pod"] * 14)
        assert f["false_alarm_days_per_year"] <= target + 1e-9  # each fold is set to the target too
    assert summary["levels"]["advisory"]["pod"] >= summary["levels"]["warning"]["pod"]
    assert summary["levels"]["advisory"]["pod"] >= 0.5
    idc = summary["default_id_curve"]
    assert idc["advisory"]["warning_days_per_year"] > summary["levels"]["advisory"]["warning_days_per_year"]
    assert any("too few" in c for c in summary["caveats"]) == (MIN_EVENTS_FOR_SKILL > 14)
    # The TOML is the site section, usable as is.
    cfg = WarningSettings.model_validate(tomllib.loads(out.read_text())["warning"]).for_site("hill")
    cal_cfg = cfg.rainfall.calibrated
    assert cal_cfg is not None and cal_cfg.events == 14 and cal_cfg.hold_after_rain_s == 21600
    for k, rule in cal_cfg.levels():
        f = summary["levels"][("advisory", "watch", "warning")[k - 1]]
        assert rule.predictor == f["predictor"] and rule.threshold == pytest.approx(f["threshold"])
        assert rule.validation["pod"] == pytest.approx(f["pod"], abs=1e-4)
    # Appended to a full agent.toml (as `agent config example` writes it) it still loads.
    from agent.config import config_from_dict
    from agent.config_example import example_toml

    full = config_from_dict(tomllib.loads(example_toml() + "\n" + out.read_text()))
    assert full.warning.for_site("hill").rainfall.calibrated == cal_cfg
    # The figures and tables of the evaluation page come from the same summary.
    rep = _cli(
        "report",
        "rain",
        str(table),
        "--summary",
        str(tmp_path / "summary.json"),
        "--out",
        str(tmp_path / "img"),
    )
    assert rep.returncode == 0, rep.stderr
    for name in ("rain-roc.png", "rain-series.png"):
        png = (tmp_path / "img" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    tables = (tmp_path / "img" / "rain-tables.md").read_text()
    assert f"| advisory | 3 | {summary['levels']['advisory']['predictor']} |" in tables
    assert "| rain_3d | " in tables and "Default ID curve" in tables


def test_calibrate_refuses_a_table_it_did_not_write(tmp_path: Path) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("date,event\n2020-01-01,1\n")
    cal = _cli("calibrate", "rain", str(bad), "--out", str(tmp_path / "x.toml"))
    assert cal.returncode == 2 and f"{bad}:1: not a day table" in cal.stderr


def test_threshold_keeps_false_alarms_at_or_below_the_target() -> None:
    rng = np.random.default_rng(0)
    scores = rng.gamma(1.0, 10.0, 3650)
    for target in (0.3, 1.0, 3.0, 10.0):
        thr = threshold_for(scores, 10.0, target)
        assert thr is not None
        assert (scores >= thr).sum() == int(target * 10)  # distinct scores: exactly the allowed count
    tied = np.array([5.0, 5.0, 5.0, 1.0])
    thr = threshold_for(tied, 1.0, 1.0)
    assert thr is not None and (tied >= thr).sum() == 0  # a tie at the cut cannot be split


def test_clopper_pearson_exact_intervals_and_the_small_sample_statement() -> None:
    lo, hi = clopper_pearson(0, 5)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 5))
    lo, hi = clopper_pearson(5, 5)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 5))
    lo, hi = clopper_pearson(3, 10)
    assert lo == pytest.approx(0.0667, abs=1e-4) and hi == pytest.approx(0.6525, abs=1e-4)
    groups = [np.array([i]) for i in range(5)]
    assert skill_statement(4, 5, 3.0, groups).startswith("too few events to claim skill")
    groups = [np.array([i]) for i in range(40)]
    assert skill_statement(20, 40, 3.0, groups).startswith("POD above chance")
    assert skill_statement(1, 40, 300.0, groups).startswith("no demonstrated skill")


def test_hourly_catalogue_calibrates_an_n_hour_total(tmp_path: Path) -> None:
    """SYNTHETIC hourly record: landslides follow the most intense 3-hour bursts, not the wettest days."""
    rng = np.random.default_rng(11)
    hours = 24 * 365 * 3
    mm = np.where(rng.random(hours) < 0.08, rng.gamma(0.7, 2.0, hours), 0.0)
    bursts = rng.choice(np.arange(48, hours - 48, 24 * 20), size=12, replace=False)
    for b in bursts:
        mm[b : b + 3] += 18.0  # a 54 mm 3-hour burst
    stamps = np.datetime64("2015-01-01T01:00") + np.arange(hours) * np.timedelta64(1, "h")
    rain = tmp_path / "hourly.csv"
    rain.write_text("time,mm\n" + "".join(f"{t}Z,{v:.1f}\n" for t, v in zip(stamps, mm, strict=True)))
    ls = tmp_path / "ls.csv"
    ls.write_text("date\n" + "".join(f"{(stamps[b]).astype('datetime64[D]')}\n" for b in sorted(bursts)))
    table = tmp_path / "t.csv"
    imp = _cli(
        "data", "import", "rain-catalogue", "--rain", str(rain), "--landslides", str(ls), "--out", str(table)
    )
    assert imp.returncode == 0 and "hourly record detected" in imp.stderr, imp.stderr
    out = tmp_path / "th.toml"
    cal = _cli(
        "calibrate",
        "rain",
        str(table),
        "--out",
        str(out),
        "--json",
        "--no-pairs",
        "--predictors",
        "rain_3h,rain_24h,rain_1d,ante_3d",
    )
    assert cal.returncode == 0, cal.stderr
    summary = json.loads(cal.stdout.strip().splitlines()[-1])
    assert summary["step"] == "hourly" and summary["events"] == 12
    assert summary["predictors"]["rain_3h"]["auc"] > summary["predictors"]["ante_3d"]["auc"]
    assert summary["levels"]["advisory"]["predictor"] == "rain_3h"
    assert summary["levels"]["advisory"]["pod"] >= 0.75
    rule = tomllib.loads(out.read_text())["warning"]["sites"]["site"]["rainfall"]["calibrated"]["advisory"]
    assert rule["predictor"] == "rain_3h" and rule["kind"] == "total"
