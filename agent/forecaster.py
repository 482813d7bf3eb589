"""The displacement forecast on the gateway: store steps -> feature window -> model -> ForecastInput."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from agent.errors import LewsError
from agent.features.aggregate import DAY_S
from agent.features.displacement import Forecast, interpret
from agent.features.store import Store
from agent.features.windows import feature_window
from agent.inference.manager import ModelManager
from agent.warning.inputs import ForecastInput

log = logging.getLogger(__name__)

MODEL = "displacement"


@dataclass(frozen=True)
class ForecastResult:
    """One forecast and what it was made from (for the MQTT forecast payload)."""

    input: ForecastInput
    forecast: Forecast
    valid_from: float  # end of the last step in the window: the forecast is for the step after
    horizon_s: float
    model_version: str
    backend: str


class Forecaster:
    """Runs the displacement model on the latest closed steps; never raises (counts why it could not)."""

    def __init__(
        self, store: Store, models: ModelManager, *, step_s: int = DAY_S, min_completeness: float = 0.5
    ):
        self.store = store
        self.models = models
        self.step_s = step_s
        self.min_completeness = min_completeness
        self.counters: Counter[str] = Counter()
        self.last_reason = ""

    def _skip(self, reason: str, key: str) -> None:
        self.counters[key] += 1
        if reason != self.last_reason:
            log.info("forecast skipped: %s", reason)
        self.last_reason = reason

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
        outputs = self.models.run(MODEL, {entry.inputs[0].name: window.x})
        if outputs is None:
            self._skip(f"model run failed ({self.models.mode})", "skipped_model_error")
            return None
        try:
            fc = interpret(outputs, entry.meta, window.completeness)
        except LewsError as exc:
            self._skip(str(exc), "skipped_bad_output")
            return None
        self.counters["forecasts"] += 1
        self.last_reason = ""
        version = str(self.models.status().get("bundle_id") or "unknown")
        valid_from = window.last_step + self.step_s
        horizon = float(entry.meta.get("horizon_steps", 1)) * self.step_s
        fi = ForecastInput(
            predicted_mm=fc.displacement_mm,
            t=valid_from,
            model_name=MODEL,
            model_version=version,
            completeness=fc.completeness,
            interval_lo_mm=fc.interval_mm[0],
            interval_hi_mm=fc.interval_mm[1],
            interval_level=fc.interval_nominal,
            exceedance=dict(fc.exceed_prob),
            horizon_s=horizon,
        )
        return ForecastResult(fi, fc, valid_from, horizon, version, self.models.mode)
