"""Uncalibrated sites: `agent diagnose` / `agent status` say so, with the default's measured cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.warning.rain_notice import DEFAULT_ID_CUBATAO, rain_calibration
from agent.warning.settings import WarningSettings
from export.rain.landslides import read_landslides
from export.rain.series import read_rain
from export.rain.table import build_table
from export.rain.validate import id_curve


def test_the_quoted_cost_of_the_default_is_what_the_catalogue_gives(shared_data: Path) -> None:
    cubatao = shared_data / "cubatao-rain-landslides"
    table = build_table(
        read_rain(cubatao / "raingauge-hb.csv"), read_landslides(cubatao / "landslides.csv"), "landslides.csv"
    )
    got = id_curve(table.subset(table.usable))
    for lv in ("advisory", "watch"):
        for key in ("warning_days_per_year", "false_alarm_days_per_year"):
            assert got[lv][key] == pytest.approx(DEFAULT_ID_CUBATAO[lv][key], abs=0.05), (lv, key)
        assert got[lv]["pod"] == pytest.approx(DEFAULT_ID_CUBATAO[lv]["pod"], abs=0.005)
    assert got["advisory"]["events"] == 162


def test_uncalibrated_and_calibrated_messages() -> None:
    notice = rain_calibration(WarningSettings(), "hill")
    assert notice["calibrated"] is False
    assert "NOT calibrated for site hill" in notice["message"] and "110.4 days a year" in notice["message"]
    assert "agent-export calibrate rain" in notice["message"]
    level: dict[str, Any] = {
        "kind": "total",
        "predictor": "rain_2d",
        "threshold": 113.7,
        "validation": {"pod": 0.16, "false_alarm_days_per_year": 2.96},
    }
    cfg = WarningSettings.model_validate(
        {"sites": {"hill": {"rainfall": {"calibrated": {"events": 162, "advisory": level}}}}}
    )
    notice = rain_calibration(cfg, "hill")
    assert notice["calibrated"] is True
    assert "advisory rain_2d >= 113.7 mm (POD 0.16, 2.96 false-alarm days/yr)" in notice["message"]
    assert rain_calibration(cfg, "other")["calibrated"] is False  # per site


def test_diagnose_check_and_status_summary_carry_the_notice(tmp_path: Path) -> None:
    from agent.config import config_from_dict
    from agent.diagnose.checks_config import rain_thresholds
    from agent.diagnose.model import Context, Options
    from agent.diagnose.status import summarise

    cfg = config_from_dict({"site": {"site": "hill", "node": "gw1"}, "daemon": {"state_dir": str(tmp_path)}})
    res = rain_thresholds(Context(cfg, options=Options()))
    assert res.status.name == "PASS" and "NOT calibrated for site hill" in res.value
    assert res.detail["calibrated"] is False
    summary = summarise(cfg, broker=False)
    assert summary["rain_thresholds"]["calibrated"] is False and summary["running"] is False
