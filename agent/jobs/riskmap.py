"""The risk-map job: re-runs the U-Net when the rain event changed or the map is older than
``daemon.riskmap_interval_s`` (data time), keeps the map for the report and publishes its summary."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from agent.features.aggregate import HOUR_S
from agent.features.store import Store
from agent.history import save_riskmap
from agent.publish.publisher import Publisher
from agent.riskmap import RiskMapper
from agent.snapshot import rain_input
from agent.warning.inputs import SpatialInput


class RiskMapJob:
    name = "riskmap"

    def __init__(
        self,
        mapper: RiskMapper | None,
        store: Store,
        publisher: Publisher,
        state_dir: Path,
        interval_s: float,
        level: Callable[[], int],
        clock: Callable[[], float],
    ) -> None:
        self.mapper, self.store, self.publisher = mapper, store, publisher
        self.state_dir, self.interval_s = state_dir, interval_s
        self._level, self._clock = level, clock
        self.spatial: SpatialInput | None = None
        self._key: tuple[float, float] | None = None
        self._t = -math.inf

    def run(self) -> None:
        if self.mapper is None:
            return
        now = self._clock()
        rain = rain_input(self.store.last_steps(HOUR_S, 15 * 24, now + HOUR_S), now)
        p = rain.event_mean_intensity_mm_h if rain is not None else 0.0
        d = rain.event_duration_h if rain is not None else 0.0
        key = (round(p, 1), round(d))
        if key == self._key and now - self._t < self.interval_s:
            return
        result = self.mapper.run(p, d, now)
        if result is None:
            return
        self._key, self._t, self.spatial = key, now, result.spatial
        self.publisher.publish_riskmap(
            result.summary,
            level=self._level(),
            model_version=result.spatial.model_version,
            completeness=result.spatial.completeness,
        )
        # the file is for the report and the status page: optional, after the engine's input is set
        save_riskmap(
            self.state_dir, result.probability, t=now, threshold=result.spatial.probability_threshold
        )
