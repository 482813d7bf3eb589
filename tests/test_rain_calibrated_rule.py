"""The site-calibrated rain rule (``rainfall.calibrated``): live windows, levels, hold, evidence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from agent.errors import ConfigError
from agent.features.rain_windows import live_predictors, logistic_probability
from agent.warning.engine import WarningEngine
from agent.warning.inputs import Snapshot
from agent.warning.rainfall import rain_summary, rainfall_rule
from agent.warning.settings import WarningSettings

T0 = 1_767_225_600.0  # 2026-01-01T00:00Z
H = 3600.0
VALIDATION = {"method": "leave-one-event-out", "pod": 0.5, "events": 12, "false_alarm_days_per_year": 2.9}


def _cal(**over: Any) -> dict[str, Any]:
    cal: dict[str, Any] = {
        "source": "test",
        "hold_after_rain_s": 6 * H,
        "advisory": {
            "kind": "total",
            "predictor": "rain_3h",
            "threshold": 30.0,
            "intercept": -4.0,
            "coef": {"rain_3h": 0.05},
            "validation": VALIDATION,
        },
        "watch": {"kind": "total", "predictor": "rain_1d", "threshold": 80.0},
        "warning": {
            "kind": "probability",
            "predictor": "logistic(rain_1d, ante_2d)",
            "threshold": 0.6,
            "intercept": -6.0,
            "coef": {"rain_1d": 0.05, "ante_2d": 0.02},
        },
    }
    cal.update(over)
    return cal


def _settings(cal: dict[str, Any]) -> WarningSettings:
    return WarningSettings.model_validate({"sites": {"s": {"rainfall": {"calibrated": cal}}}}).for_site("s")


def _series(days: int = 5) -> tuple[np.ndarray, np.ndarray]:
    ends = T0 + H * np.arange(1, 24 * days + 1)
    return ends, np.zeros(ends.size)


def _level(ends: np.ndarray, mm: np.ndarray, now: float, cfg: WarningSettings) -> tuple[int, Any]:
    sl = rainfall_rule(rain_summary(ends, mm, now, H), now, cfg.rainfall, cfg.alert.hysteresis_band)
    return int(sl.level), sl


def test_live_windows_day_totals_antecedent_and_n_hour_totals() -> None:
    starts = T0 + H * np.arange(24 * 4, dtype=np.float64)
    mm = np.zeros(starts.size)
    mm[24 * 1 + 5] = 10.0  # day 1, 05:00-06:00
    mm[24 * 2 + 22 : 24 * 2 + 24] = [4.0, 6.0]  # day 2, 22:00-24:00
    mm[24 * 3 + 1] = 3.0  # day 3, 01:00-02:00
    present = np.ones(starts.size, dtype=bool)
    now = T0 + 3 * 86400 + 2 * H  # day 3, 02:00
    live = live_predictors(starts, mm, present, now).now
    assert live["rain_1d"] == 3.0 and live["rain_2d"] == 13.0 and live["rain_3d"] == 23.0
    assert live["ante_1d"] == 10.0 and live["ante_2d"] == 20.0 and math.isnan(live["ante_7d"])
    assert live["rain_3h"] == 9.0 and live["rain_1h"] == 3.0 and live["rain_6h"] == 13.0
    present[24 * 2 + 10] = False  # a silent hour on day 2 makes every window over it missing
    live = live_predictors(starts, mm, present, now).now
    assert math.isnan(live["rain_2d"]) and math.isnan(live["ante_1d"]) and live["rain_1d"] == 3.0
    assert live["rain_12h"] == 13.0 and math.isnan(live["rain_24h"])


def test_day_offset_moves_the_day_boundary() -> None:
    starts = T0 - 86400 + H * np.arange(72, dtype=np.float64)
    mm = np.zeros(72)
    mm[24 + 8] = 5.0  # 08:00-09:00 UTC
    live = live_predictors(starts, mm, np.ones(72, bool), T0 + 12 * H, day_offset_h=10.0).now
    assert live["rain_1d"] == 0.0 and live["ante_1d"] == 5.0  # the gauge day started at 10:00 UTC


def test_levels_hold_after_rain_stops_and_release() -> None:
    cfg = _settings(_cal())
    ends, mm = _series()
    storm = 24 * 3 + 5  # day 3: 3 h of 15 mm/h ending at 08:00
    mm[storm : storm + 3] = 15.0
    assert _level(ends, mm, T0 + 3 * 86400 + 6 * H, cfg)[0] == 0  # 15 mm in 3 h
    lvl, sl = _level(ends, mm, T0 + 3 * 86400 + 8 * H, cfg)
    assert lvl == 1 and sl.evidence["predictor"] == "rain_3h" and sl.evidence["value"] == 45.0
    assert sl.evidence["threshold"] == 30.0 and sl.evidence["validation"] == VALIDATION
    assert sl.evidence["probability"] == pytest.approx(
        logistic_probability(-4.0, {"rain_3h": 0.05}, {"rain_3h": 45})
    )
    assert (
        "rain_3h 45.0 mm >= advisory threshold 30.0 mm" in sl.reason and "POD 0.50 of 12 events" in sl.reason
    )
    # rain stopped at 08:00; the 3 h total fell below 30 mm after 09:00: held 6 h, until 15:00
    assert _level(ends, mm, T0 + 3 * 86400 + 15 * H, cfg)[0] == 1
    lvl, sl = _level(ends, mm, T0 + 3 * 86400 + 16 * H, cfg)
    assert lvl == 0 and "below the advisory threshold" in sl.reason
    short = _settings(_cal(hold_after_rain_s=0.0))
    assert _level(ends, mm, T0 + 3 * 86400 + 10 * H, short)[0] == 0


def test_day_total_reaches_watch_and_the_probability_model_warning() -> None:
    cfg = _settings(_cal())
    ends, mm = _series()
    mm[24 * 2 : 24 * 3] = 3.0  # 72 mm on day 2
    mm[24 * 3 : 24 * 3 + 20] = 5.0  # 100 mm on day 3 by 20:00
    lvl, sl = _level(ends, mm, T0 + 3 * 86400 + 17 * H, cfg)  # 85 mm so far
    assert lvl == 2 and sl.evidence["predictor"] == "rain_1d"
    lvl, sl = _level(ends, mm, T0 + 3 * 86400 + 20 * H, cfg)
    p = logistic_probability(-6.0, {"rain_1d": 0.05, "ante_2d": 0.02}, {"rain_1d": 100.0, "ante_2d": 72.0})
    assert p >= 0.6 and lvl == 3
    assert sl.evidence["unit"] == "probability" and sl.evidence["value"] == pytest.approx(p)
    assert sl.evidence["levels"]["warning"]["inputs"] == {"rain_1d": 100.0, "ante_2d": 72.0}
    assert sl.evidence["id_curve"]["level"] >= 0  # the ID curve is shown beside, not graded


def test_missing_record_is_no_data_and_not_normal() -> None:
    cfg = _settings(_cal(advisory="off", watch="off"))
    ends, mm = _series(days=2)  # under two days: ante_2d reaches before the record
    now = T0 + 86400 + 20 * H
    sl = rainfall_rule(rain_summary(ends, mm, now, H, windows_h=(1.0, 24.0)), now, cfg.rainfall, 0.2)
    lvl = int(sl.level)
    assert lvl == -1 and "ante_2d" in sl.reason
    daily = rain_summary(T0 + 86400 * np.arange(1, 6), np.zeros(5), T0 + 5 * 86400, 86400.0)
    got = rainfall_rule(daily, T0 + 5 * 86400, cfg.rainfall, 0.2)
    assert int(got.level) == -1 and "no hourly rain record" in got.reason


def test_without_calibration_the_id_curve_grades_as_before() -> None:
    cfg = WarningSettings()
    ends, mm = _series()
    mm[24 * 3 : 24 * 3 + 3] = 15.0
    lvl, sl = _level(ends, mm, T0 + 3 * 86400 + 3 * H, cfg)
    assert lvl >= 1 and "x the ID threshold" in sl.reason and "rule" not in sl.evidence


@pytest.mark.parametrize(
    ("level", "needle"),
    [
        ({"kind": "total", "predictor": "rain_5h", "threshold": 3.0}, "unknown rain predictor"),
        ({"kind": "probability", "predictor": "p", "threshold": 0.5}, "needs its model's coef"),
        ({"kind": "probability", "predictor": "p", "threshold": 5.0, "coef": {"rain_1d": 1.0}}, "(0, 1]"),
        ({"kind": "total", "predictor": "rain_1d", "threshold": 3.0, "colour": "red"}, "xtra"),
    ],
)
def test_bad_calibrated_sections_are_refused(level: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=r"warning.sites.s") as err:
        _settings(_cal(advisory=level))
    assert needle in str(err.value) or needle in repr(err.value.__cause__)


def test_the_engine_publishes_the_calibrated_level_with_its_reason() -> None:
    cfg = _settings(_cal())
    engine = WarningEngine(cfg, "s")
    ends, mm = _series()
    mm[24 * 3 : 24 * 3 + 20] = 5.0
    now = T0 + 3 * 86400 + 18 * H
    res = engine.evaluate(Snapshot("s", rain=rain_summary(ends, mm, now, H)), now)
    assert int(res.published_level) == 2
    rain = next(s for s in res.explanation.to_dict()["sources"] if s["source"] == "rainfall")
    assert rain["evidence"]["predictor"] == "rain_1d" and "watch threshold 80.0 mm" in rain["reason"]
