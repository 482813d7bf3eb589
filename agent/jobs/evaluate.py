"""The evaluation job: the warning engine over a snapshot of the store, the wire mirror, the forecast
and the risk map; every event and the engine state committed in one outbox transaction.

The engine grades every topic's level: the alert's, and (``wire_level``) the wire mirror's.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

from agent.config import AgentConfig
from agent.errors import LewsError
from agent.features.aggregate import DAY_S, HOUR_S
from agent.features.store import Store
from agent.publish.commands import AckRequest, VerifiedCommand
from agent.publish.publisher import Publisher
from agent.snapshot import DISPLACEMENT_STEPS, displacement_input, rain_input, seismic_input
from agent.warning.engine import EvaluationResult, WarningEngine
from agent.warning.inputs import ForecastInput, Snapshot, SpatialInput, WireInput
from agent.warning.levels import Level
from agent.warning.rules import wire_rule

log = logging.getLogger(__name__)


class EvaluationJob:
    name = "evaluate"

    def __init__(
        self,
        cfg: AgentConfig,
        store: Store,
        publisher: Publisher,
        *,
        wire: Callable[[], WireInput | None],
        forecast: Callable[[], ForecastInput | None],
        spatial: Callable[[], SpatialInput | None],
        clock: Callable[[], float],
        counters: Counter[str] | None = None,
    ) -> None:
        self.cfg, self.store, self.publisher = cfg, store, publisher
        self._wire, self._forecast, self._spatial, self._clock = wire, forecast, spatial, clock
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self.lock = threading.Lock()  # the engine is advanced by one thread at a time
        self._state_lock = threading.Lock()
        self.last: EvaluationResult | None = None
        self._levels: list[int] = []
        self.engine = self._load_engine()
        self._wire_cfg = cfg.warning.for_site(cfg.site.site).wire

    def _load_engine(self) -> WarningEngine:
        """Resume the alert state committed in the outbox together with the events it produced."""
        site = self.cfg.site.site
        text = self.publisher.engine_state()
        if text is not None:
            try:
                engine = WarningEngine.from_json(self.cfg.warning, site, text)
                log.info("alert state resumed from the outbox (level %d)", int(engine.state.level))
                return engine
            except (LewsError, ValueError, KeyError) as exc:
                self.counters["engine_state_unreadable"] += 1
                log.error("stored alert state unreadable (%s): starting at level 0", exc)
        return WarningEngine(self.cfg.warning, site)

    # ---- levels ---------------------------------------------------------------------------------
    def level(self) -> int:
        with self._state_lock:
            return int(self.last.published_level) if self.last is not None else 0

    def levels_seen(self) -> list[int]:
        with self._state_lock:
            return list(self._levels)

    def wire_level(self, wire: WireInput) -> int:
        """The wire topic's level, by the engine's wire rule at the reading's time: tripped 3, open or
        shorted ``warning.wire.fault_level``, intact 0."""
        result = wire_rule(wire, wire.t, self._wire_cfg)
        return max(int(result.level), int(Level.NORMAL))

    def publish_current(self) -> bool:
        """After the first evaluation at start: publish the engine's current alert when the stored
        retained one says otherwise (another level or alert, or none at all: a fresh state directory),
        so no subscriber is served a level the agent no longer holds. True when one was published."""
        res = self.last
        if res is None or res.events:  # events commit a new retained alert themselves
            return False
        last = self.publisher.retained.last("alert")
        level, alert_id = int(res.published_level), res.alert_id
        if last is not None and int(last.get("level", -1)) == level and last.get("alert_id") == alert_id:
            return False
        self.publisher.publish_current_alert(level, res.explanation, alert_id)
        self.counters["current_alert_published"] += 1
        log.info("retained alert set to the current state at start (level %d)", level)
        return True

    # ---- one evaluation -------------------------------------------------------------------------
    def snapshot(self, now: float) -> Snapshot:
        """What the engine sees at ``now``; the wire reading is the mirror's at ``now`` (a frame decoded
        while this snapshot is assembled belongs to the next evaluation, which it wakes)."""
        wire = self._wire()
        daily = self.store.last_steps(DAY_S, DISPLACEMENT_STEPS, now)  # closed days: a day's median
        hourly = self.store.last_steps(HOUR_S, 15 * 24, now + HOUR_S)
        window = self.cfg.warning.seismic.max_age_s
        seis = self.store.read_samples(now - window, now + 1.0, ["seismic.pgv_mm_s", "seismic.trigger"])
        return Snapshot(
            site=self.cfg.site.site,
            wire=wire,
            forecast=self._forecast(),
            displacement=displacement_input(daily),
            rain=rain_input(hourly, now),
            seismic=seismic_input(seis, now, window),
            spatial=self._spatial(),
        )

    def run(self) -> None:
        with self.lock:
            now = self._clock()
            result = self.engine.evaluate(self.snapshot(now), now)
            self.publisher.publish_evaluation(result, state=self.engine.state.to_json())
            for ev in result.events:
                self.counters[f"events_{ev.kind}"] += 1
            with self._state_lock:
                self.last = result
                if not self._levels or self._levels[-1] != int(result.published_level):
                    self._levels.append(int(result.published_level))
            self.counters["evaluations"] += 1

    def on_ack(self, cmd: VerifiedCommand) -> str:
        req = AckRequest.from_command(cmd)
        with self.lock:
            event = self.engine.acknowledge(req.by, self._clock(), note=req.note, alert_id=req.alert_id)
            self.publisher.publish_alert_event(
                event,
                current_explanation=event.explanation,
                current_level=int(self.engine.state.level),
                current_alert_id=self.engine.state.alert_id,
                acknowledged_by=req.by,
                state=self.engine.state.to_json(),
            )
        return f"acknowledged {event.alert_id} by {req.by}"
