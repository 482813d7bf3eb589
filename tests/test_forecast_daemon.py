"""The running daemon with a multi-horizon bundle (the moving-average reference as its graph), a real
mosquitto broker and a store holding 40 days of GNSS + rain steps: the forecast payload (schema v2)
carries every horizon, names the model and horizon, and the alarm-rate target raises the level."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.broker import Broker

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features import forecast_dist as fdist
from agent.features.aggregate import DAY_S, StepTable
from agent.publish import schemas
from agent.publish.watch import TopicWatcher
from export.bundle import build_bundle
from export.displacement.references import ReferenceModule
from export.runs import ExportModel, LoadedRun
from export.signing import keygen

DAYS = 40
NOW = 1_780_000_000.0 // DAY_S * DAY_S + 6 * 3600.0  # 06:00 UTC on a day
FEATURES = ["velocity_mm", "rain_mm", "rain_sum_3", "rain_sum_7", "rain_sum_30", "velocity_up_mm"]


def _meta() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    q = {str(h): fdist.residual_quantiles(rng.normal(size=400)) for h in (1, 3, 7)}
    warning = {"velocity_mm_per_step": 1.0, "k_steps": 7, "horizon_steps": 7, "velocity_source": "given"}
    return {
        "feature_names": FEATURES,
        "window": 14,
        "step": "P1D",
        "horizon_steps": 1,
        "horizons_steps": [1, 3, 7],
        "input_name": "window",
        "output_names": ["displacement_mm"],
        "projection": {"disp_e_mm": 1.0, "disp_n_mm": 0.0},
        "station_projections": {},
        "norm_mean": [0.3, 1.0, 3.0, 7.0, 30.0, 0.0],
        "norm_std": [1.0, 3.0, 6.0, 10.0, 30.0, 1.0],
        "thresholds_mm": [1.0, 2.0, 3.0],
        "primary_threshold_mm": 2.0,
        "min_completeness": 0.7,
        "conformal_half_width_mm": 1.5,
        "conformal_nominal": 0.9,
        "scale_floor_mm": 0.3,
        "residual_quantiles": q,
        "quantile_levels": list(fdist.QUANTILE_LEVELS),
        "warning": warning,
        "station_warnings": {},
        "warning_source": "distribution",
        "exceed_prob_cutoff": 0.5,
        "model_variant": "moving_average",
        "evaluator": "closed_form",
        "synthetic": True,
    }


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fcbundle")
    keygen(root / "keys")
    meta = _meta()
    x = np.random.default_rng(1).normal(size=(64, len(FEATURES), 14)).astype(np.float32)
    module = ReferenceModule("moving_average", meta).eval()
    with torch.no_grad():
        y = module(torch.from_numpy(x)).numpy()
    model = ExportModel(
        name="displacement",
        task="displacement_forecast",
        module=module,
        input_names=["window"],
        output_names=["displacement_mm"],
        calibration_inputs={"window": x[:32]},
        calibration_description="SYNTHETIC normal windows (tests/test_forecast_daemon.py)",
        test_inputs={"window": x[32:]},
        test_targets={"displacement_mm": y[32:]},
        meta=meta,
    )
    run = LoadedRun(kind="displacement", run_dir=root, models=[model])
    out = build_bundle([run], root / "keys" / "signing.key", root / "bundle", bundle_id="fc-test")
    return out, root / "keys" / "signing.pub"


def _steps(rate_mm_day: float) -> StepTable:
    """DAYS daily steps before NOW: slow creep, then the last 10 days at ``rate_mm_day``."""
    times = (NOW // DAY_S - DAYS) * DAY_S + DAY_S * np.arange(DAYS, dtype=np.float64)
    v = np.where(np.arange(DAYS) >= DAYS - 10, rate_mm_day, 0.2)
    e = np.cumsum(v) + 0.2 * np.random.default_rng(2).normal(size=DAYS)
    values = {
        "disp_e_mm": e,
        "disp_n_mm": np.zeros(DAYS),
        "disp_u_mm": np.zeros(DAYS),
        "rain_mm": np.zeros(DAYS),
        "pgv_mm_s": np.full(DAYS, np.nan),
        "seismic_events": np.full(DAYS, np.nan),
    }
    ones = {k: np.ones(DAYS) for k in values}
    return StepTable(DAY_S, times, values, {k: np.full(DAYS, 4.0) for k in values}, ones)


def _forecast_source(alert: dict[str, Any]) -> dict[str, Any] | None:
    """The forecast source of an alert payload's explanation, when it has data."""
    for s in alert.get("explanation", {}).get("sources", []):
        if s["source"] == "forecast" and s["reason"].startswith("forecast "):
            return dict(s)
    return None


def _alerts(msgs: list[Any]) -> list[dict[str, Any]]:
    return [m.json() for m in msgs if m.topic.endswith("/alert") and m.payload]


def _run(
    tmp_path: Path, broker: Broker, bundle: tuple[Path, Path], rate: float, *, alert: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(last forecast payload, alert explanation's forecast source): from the broker when the level
    changes (``alert``), else from the daemon's last evaluation (an unchanged level is not re-sent)."""
    cfg = config_from_dict(
        {
            "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.1},
            "store": {"path": str(tmp_path / "store.sqlite")},
            "inference": {"bundle_dir": str(bundle[0]), "public_key": str(bundle[1])},
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "outbox": {"path": str(tmp_path / "outbox.sqlite")},
            },
            # level thresholds far above the forecast: only the alarm-rate target can raise the level
            "warning": {
                "forecast": {
                    "displacement_mm": {"advisory": 200.0, "watch": 300.0, "warning": 400.0},
                    "max_age_s": 3 * DAY_S,
                    "min_completeness": 0.5,
                },
                "velocity": {"mm_per_day": {"advisory": "off", "watch": "off", "warning": "off"}},
            },
        }
    )
    watcher = TopicWatcher(broker.host, broker.port, "lews/v1/#").start()
    daemon = Daemon(cfg, clock=lambda: NOW)
    daemon.store.put_steps(_steps(rate))
    daemon.start()
    try:
        got = watcher.wait_for(
            lambda ms: (
                any(m.topic.endswith("/forecast") for m in ms)
                and (not alert or any(_forecast_source(a) is not None for a in _alerts(ms)))
            ),
            90,  # generous: the CI machine may be loaded
        )
        assert any(m.topic.endswith("/forecast") for m in got), [m.topic for m in got]
        src: dict[str, Any] = {}
        deadline = time.monotonic() + 60  # the evaluation after the forecast (every 0.1 s)
        while time.monotonic() < deadline and not str(src.get("reason", "")).startswith("forecast "):
            last = daemon.evaluation.last
            if last is not None and "forecast" in last.source_levels:
                src = last.source_levels["forecast"].to_dict()
            time.sleep(0.05)
    finally:
        daemon.stop()
        watcher.stop()
    msgs = watcher.snapshot()
    forecast = [m.json() for m in msgs if m.topic.endswith("/forecast")][-1]
    if alert:
        src = _forecast_source([a for a in _alerts(msgs) if _forecast_source(a) is not None][-1]) or {}
    return forecast, src


def test_fast_motion_raises_the_alarm_rate_level_through_the_broker(
    tmp_path: Path, mosquitto: Broker, bundle: tuple[Path, Path]
) -> None:
    fc, src = _run(tmp_path, mosquitto, bundle, rate=3.0)
    assert schemas.errors("forecast", fc) == []
    assert fc["schema_version"] == 2
    assert fc["model"]["variant"] == "moving_average" and fc["model"]["horizon_s"] == 7 * DAY_S
    assert [h["horizon_s"] for h in fc["horizons"]] == [DAY_S, 3 * DAY_S, 7 * DAY_S]
    seven = fc["horizons"][-1]
    assert seven["lo_mm"] < seven["predicted_mm"] < seven["hi_mm"]
    assert 10.0 < seven["predicted_mm"] < 30.0  # ~ 7 days x the window's mean velocity
    # the exceedance list is for the site's level thresholds, the same numbers the engine grades
    # = the site's per-step level thresholds x 7 steps (mm over the warning horizon)
    assert [e["threshold_mm"] for e in fc["exceedance"]] == [1400.0, 2100.0, 2800.0]
    assert [e["threshold_mm"] for e in fc["horizons"][0]["exceedance"]] == [200.0, 300.0, 400.0]
    assert fc["thresholds_mm"] == {"advisory": 1400.0, "watch": 2100.0, "warning": 2800.0}
    assert [e["level"] for e in fc["exceedance"]] == ["advisory", "watch", "warning"]
    assert fc["warning"]["raised"] is True and fc["warning"]["probability"] >= fc["warning"]["cutoff"]
    assert src["level"] == 2, src
    # the engine graded the 7-day forecast as a mean rate (mm per step) against the per-step thresholds
    assert src["evidence"]["predicted_mm"] == pytest.approx(seven["predicted_mm"] / 7, rel=1e-6)
    assert src["evidence"]["driver"] == "alarm-rate forecast" and src["evidence"]["alarm_rate"]["level"] == 2


def test_slow_motion_stays_normal(tmp_path: Path, mosquitto: Broker, bundle: tuple[Path, Path]) -> None:
    fc, src = _run(tmp_path, mosquitto, bundle, rate=0.2, alert=False)
    assert schemas.errors("forecast", fc) == []
    assert fc["warning"]["raised"] is False
    assert src["level"] == 0 and src["evidence"]["alarm_rate"]["p"] < 0.5, src
    assert fc["level"] == 0
