"""The displacement forecast on the gateway: store steps -> feature window -> model -> ForecastInput.

A multi-horizon bundle gives the cumulative displacement for each of its horizons (e.g. 1, 3, 7 days)
with intervals, exceedance probabilities for the site's level thresholds
(``warning.forecast.displacement_mm``, mm per step: horizon h uses ``T_k * h`` mm) and the probability
of the site's warning target (K-day velocity above the alarm rate V within the horizon). The engine
sees the warning horizon's forecast as a mean rate, ``D_H / H`` mm per step (interval likewise), and
``P(D_H > T_k * H)`` keyed by ``T_k``: the same thresholds in the same units as for an older one-step
bundle. The payload carries every horizon in mm over the horizon and names the model variant and
horizon (:func:`payload_fields`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import LewsError
from agent.features.aggregate import DAY_S
from agent.features.displacement import OUTPUT_NAMES
from agent.features.forecast_dist import closed_form_forecast
from agent.features.forecast_output import Forecast, interpret
from agent.features.store import Store
from agent.features.windows import feature_window
from agent.inference.manager import ModelManager
from agent.warning.inputs import ForecastInput
from agent.warning.settings import ForecastSettings

log = logging.getLogger(__name__)

MODEL = "displacement"
LEVEL_KEYS = ("advisory", "watch", "warning")


@dataclass(frozen=True)
class ForecastResult:
    """One forecast and what it was made from (for the MQTT forecast payload)."""

    input: ForecastInput
    forecast: Forecast
    valid_from: float  # end of the last step in the window: the forecast starts here
    horizon_s: float  # the warning horizon
    model_version: str
    backend: str
    step_s: float = float(DAY_S)
    thresholds_mm: tuple[tuple[str, float], ...] = ()  # (level name, mm) the exceedances are for


class Forecaster:
    """Runs the displacement model on the latest closed steps; never raises (counts why it could not)."""

    def __init__(
        self,
        store: Store,
        models: ModelManager,
        *,
        step_s: int = DAY_S,
        min_completeness: float = 0.5,
        settings: ForecastSettings | None = None,
    ):
        self.store = store
        self.models = models
        self.step_s = step_s
        self.min_completeness = min_completeness
        self.settings = settings or ForecastSettings()
        self.counters: Counter[str] = Counter()
        self.last_reason = ""

    def _skip(self, reason: str, key: str) -> None:
        self.counters[key] += 1
        if reason != self.last_reason:
            log.info("forecast skipped: %s", reason)
        self.last_reason = reason

    def thresholds(self) -> tuple[tuple[str, float], ...]:
        """The site's level thresholds (mm per step) that are not switched off."""
        values = self.settings.displacement_mm.as_tuple()
        return tuple((k, float(v)) for k, v in zip(LEVEL_KEYS, values, strict=True) if v is not None)

    def _warning_override(self) -> dict[str, Any]:
        """The site's alarm rate V / K from the configuration (per step), when set."""
        out: dict[str, Any] = {}
        if self.settings.alarm_velocity_mm_per_day is not None:
            out["velocity_mm_per_step"] = self.settings.alarm_velocity_mm_per_day * self.step_s / DAY_S
        if self.settings.alarm_k_days is not None:
            out["k_steps"] = max(1, round(self.settings.alarm_k_days * DAY_S / self.step_s))
        return out

    def run(self, now: float) -> ForecastResult | None:
        entry = self.models.model_entry(MODEL)
        if entry is None:
            self._skip(f"no {MODEL!r} model loaded (mode {self.models.mode})", "skipped_no_model")
            return None
        try:
            window = feature_window(
                self.store, entry.meta, end=now, step_s=self.step_s, min_completeness=self.min_completeness
            )
        except LewsError as exc:
            self._skip(str(exc), "skipped_window")
            return None
        outputs: Mapping[str, Any] | None
        if entry.meta.get("evaluator") == "closed_form":
            # a closed-form reference (moving average, linear trend): exact in numpy, no INT8 clipping
            outputs = {
                OUTPUT_NAMES[0]: closed_form_forecast(str(entry.meta["model_variant"]), window.x, entry.meta)
            }
        else:
            outputs = self.models.run(MODEL, {entry.inputs[0].name: window.x})
        if outputs is None:
            self._skip(f"model run failed ({self.models.mode})", "skipped_model_error")
            return None
        thresholds = self.thresholds()
        try:
            fc = interpret(
                outputs,
                entry.meta,
                window.completeness,
                x=window.x,
                thresholds_mm=[v for _k, v in thresholds],
                per_step=True,
                warning=self._warning_override(),
            )
        except LewsError as exc:
            self._skip(str(exc), "skipped_bad_output")
            return None
        self.counters["forecasts"] += 1
        self.last_reason = ""
        version = str(self.models.status().get("bundle_id") or "unknown")
        valid_from = window.last_step + self.step_s
        horizon = float(fc.horizon_steps) * self.step_s
        n = float(fc.horizon_steps) if fc.warning is not None else 1.0  # mean rate over the horizon
        exceedance = dict(fc.exceed_prob)
        if fc.warning is not None:  # keyed by the site's rate thresholds T_k (P computed for T_k * H)
            exceedance = {t: p for (_k, t), p in zip(thresholds, fc.exceed_prob.values(), strict=True)}
        fi = ForecastInput(
            predicted_mm=fc.displacement_mm / n,
            t=valid_from,
            model_name=f"{MODEL}:{fc.model_variant}" if fc.model_variant else MODEL,
            model_version=version,
            completeness=fc.completeness,
            interval_lo_mm=fc.interval_mm[0] / n,
            interval_hi_mm=fc.interval_mm[1] / n,
            interval_level=fc.interval_nominal,
            exceedance=exceedance,
            horizon_s=horizon,
            alarm_probability=fc.warning.probability if fc.warning else float("nan"),
            alarm_cutoff=fc.warning.cutoff if fc.warning else float("nan"),
        )
        if fc.warning is None:  # older bundle: its own thresholds
            thresholds = tuple((f"{t:g}", t) for t in fc.exceed_prob)
        else:  # the payload lists them in mm over the warning horizon
            thresholds = tuple((k, t * n) for k, t in thresholds)
        return ForecastResult(
            fi, fc, valid_from, horizon, version, self.models.mode, float(self.step_s), thresholds
        )


def payload_fields(result: ForecastResult, level: int) -> dict[str, Any]:
    """Keyword arguments of ``PayloadFactory.forecast`` (schema v2) for one forecast."""
    fc = result.forecast
    names = {round(v, 9): k for k, v in result.thresholds_mm}

    def exceedance(pairs: tuple[tuple[float, float], ...]) -> list[dict[str, Any]]:
        return [{"threshold_mm": t, "probability": p, "level": names.get(round(t, 9))} for t, p in pairs]

    warning = None
    if fc.warning is not None:
        w = fc.warning
        per_day = DAY_S / result.step_s
        warning = {
            "velocity_mm_per_day": w.velocity_mm_per_step * per_day,
            "k_days": w.k_steps / per_day,
            "horizon_s": w.horizon_steps * result.step_s,
            "probability": w.probability,
            "cutoff": w.cutoff,
            "raised": w.raised,
            "source": w.source,
        }
    return {
        "valid_from": result.valid_from,
        "horizon_s": result.horizon_s,
        "predicted_mm": {"value": fc.displacement_mm, "lo": fc.interval_mm[0], "hi": fc.interval_mm[1]},
        "exceedance": exceedance(tuple(fc.exceed_prob.items())),
        "thresholds_mm": dict(result.thresholds_mm),
        "level": level,
        "model_version": result.model_version,
        "backend": result.backend,
        "completeness": fc.completeness,
        "model": {"name": MODEL, "variant": fc.model_variant or None, "horizon_s": result.horizon_s},
        "horizons": [
            {
                "horizon_s": h.steps * result.step_s,
                "predicted_mm": h.displacement_mm,
                "lo_mm": h.interval_mm[0],
                "hi_mm": h.interval_mm[1],
                "interval_level": fc.interval_nominal,
                "exceedance": exceedance(h.exceedance),
            }
            for h in fc.horizons
        ],
        "warning": warning,
    }
