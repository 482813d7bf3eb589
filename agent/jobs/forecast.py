"""The forecast job: runs the displacement forecast once per new daily step and publishes it."""

from __future__ import annotations

import math
from collections.abc import Callable

from agent.features.aggregate import DAY_S
from agent.forecaster import Forecaster, ForecastResult, payload_fields
from agent.history import History
from agent.publish.publisher import Publisher
from agent.warning.inputs import ForecastInput


class ForecastJob:
    name = "forecast"

    def __init__(
        self,
        forecaster: Forecaster,
        publisher: Publisher,
        history: History,
        level: Callable[[], int],
        clock: Callable[[], float],
    ) -> None:
        self.forecaster, self.publisher, self.history = forecaster, publisher, history
        self._level, self._clock = level, clock
        self.result: ForecastResult | None = None
        self._last_step = -math.inf

    @property
    def input(self) -> ForecastInput | None:
        return self.result.input if self.result is not None else None

    def run(self) -> None:
        now = self._clock()
        step = math.floor(now / DAY_S)
        if step <= self._last_step:
            return
        result = self.forecaster.run(now)
        if result is None:
            return
        self._last_step = step
        self.result = result
        fc = result.forecast
        self.publisher.publish_forecast(**payload_fields(result, self._level()))
        # the history (report's per-day plot, status page) keeps the shortest horizon: mm per step
        first = fc.horizons[0] if fc.horizons else None
        self.history.record_forecast(
            t=now,
            valid_from=result.valid_from,
            horizon_s=first.steps * result.step_s if first else result.horizon_s,
            value_mm=first.displacement_mm if first else fc.displacement_mm,
            lo_mm=first.interval_mm[0] if first else fc.interval_mm[0],
            hi_mm=first.interval_mm[1] if first else fc.interval_mm[1],
            model=result.model_version,
        )
