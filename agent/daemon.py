"""The gateway daemon (`agent run`): sensors -> store -> forecast -> warning engine -> outbox -> MQTT.

Threads: one per serial port (the pipeline), the store writer, the MQTT link, and the daemon's own
supervised loops: `evaluate` (warning engine, every `daemon.evaluate_interval_s` and at once on a
wire-alarm change), `telemetry`, and `watchdog` (pings systemd only while the pipeline and the
evaluation loop make real progress). The wire alarm's state is published from the port thread the
moment it is decoded, before and independently of the engine: software never delays it.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from agent import __version__
from agent.config import AgentConfig
from agent.errors import LewsError, StoreError
from agent.features.aggregate import DAY_S, HOUR_S
from agent.features.samples import Sample
from agent.features.store import Store
from agent.forecaster import Forecaster, ForecastResult
from agent.history import HISTORY_FILE, History, save_riskmap
from agent.inference.manager import ModelManager
from agent.publish.commands import AckRequest, VerifiedCommand
from agent.publish.publisher import Publisher
from agent.report.data import StatePaths
from agent.riskmap import RiskMapper, load_site_raster
from agent.sdnotify import Notifier
from agent.sensors.clock import ClockDiscipline
from agent.sensors.pipeline import Pipeline
from agent.snapshot import DISPLACEMENT_STEPS, displacement_input, rain_input, seismic_input, wire_input
from agent.supervise import SupervisedLoop, write_json_atomic
from agent.warning.engine import EvaluationResult, WarningEngine
from agent.warning.inputs import RainInput, Snapshot, SpatialInput, WireInput, WireState
from agent.web.server import StatusApp, StatusServer

log = logging.getLogger(__name__)

TELEMETRY_CHANNELS: dict[str, tuple[str, ...]] = {
    "gnss": ("gnss.e_mm", "gnss.n_mm", "gnss.u_mm", "gnss.h_acc_mm", "gnss.num_sv"),
    "rain": ("rain.mm",),
    "seismic": ("seismic.pgv_mm_s", "seismic.trigger"),
    "device": ("device.supply_v", "device.temp_c"),
}


class Daemon:
    """Owns every component; ``start()``, then ``wait()`` until ``stop()`` (SIGTERM) or a fatal error."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
        steps_every_s: float = 60.0,
    ) -> None:
        self.cfg = cfg
        # GNSS-disciplined time (agent/sensors/clock.py): the system clock, corrected when it is wrong
        self.timekeeper = ClockDiscipline(clock, enabled=cfg.sensors.gnss.discipline_clock)
        clock = self.timekeeper.now
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.state_dir = cfg.daemon.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.counters: Counter[str] = Counter()
        self.fatal: str | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._eval_lock = threading.Lock()  # the engine is advanced by one thread at a time
        self._wire: WireInput | None = None
        self._forecast: ForecastResult | None = None
        self._last_forecast_step = -math.inf
        self._last_result: EvaluationResult | None = None
        self._levels: list[int] = []
        self._refreshed_until = clock()
        self._telemetry_from = clock()
        self.outbox_depth_at_stop = -1  # messages still queued when the daemon stopped (-1: running)
        self.inference_mode_at_stop = ""
        self.store = Store(cfg.store, clock=clock)
        self.pipeline = Pipeline(
            cfg.sensors,
            self.store,
            clock=clock,
            discipline=self.timekeeper,
            steps_every_s=steps_every_s,
            daily_every_s=steps_every_s,
            hourly=True,
        )
        self.pipeline.subscribe(self._on_samples)
        inference = cfg.inference
        if inference.state_dir is None:
            inference = inference.model_copy(update={"state_dir": self.state_dir / "bundles"})
        self.models = ModelManager(inference)
        self.forecaster = Forecaster(self.store, self.models, step_s=DAY_S)
        self.history = History(self.state_dir / HISTORY_FILE)  # levels and forecasts for report / page
        self.web: StatusServer | None = None
        raster = cfg.daemon.site_raster
        self.riskmapper = RiskMapper(load_site_raster(raster), self.models) if raster is not None else None
        self._spatial: SpatialInput | None = None
        self._riskmap_key: tuple[float, float] | None = None
        self._riskmap_t = -math.inf
        self.publisher = Publisher(
            cfg.mqtt,
            site=cfg.site.site,
            node=cfg.site.node,
            agent_version=__version__,
            clock=clock,
            handlers={"ack": self._on_ack},
        )
        self.engine = self._load_engine()
        self.loops = [
            SupervisedLoop("evaluate", self._evaluate, cfg.daemon.evaluate_interval_s, self._on_fatal),
            SupervisedLoop("telemetry", self._telemetry, cfg.daemon.telemetry_interval_s, self._on_fatal),
        ]

    # ---- state ------------------------------------------------------------------------------------
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

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        status = self.models.start()
        self.publisher.set_backend(
            status["mode"], "normal" if status["mode"] != "rules_only" else "rules_only"
        )
        self.publisher.start()
        self.pipeline.start()
        for loop in self.loops:
            loop.start()
        if self.cfg.web.enabled:
            app = StatusApp(
                StatePaths.from_config(self.cfg),
                self.cfg.web,
                warning=self.cfg.warning,
                site=self.cfg.site.site,
            )
            self.web = StatusServer(app).start()
        self._watchdog = threading.Thread(target=self._watchdog_loop, name="watchdog", daemon=True)
        self._watchdog.start()
        self.notifier.ready(f"running, inference {status['mode']}")
        log.info(
            "daemon started: site %s node %s, inference %s",
            self.cfg.site.site,
            self.cfg.site.node,
            status["mode"],
        )

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _on_fatal(self, reason: str) -> None:
        self.fatal = reason
        log.critical("stopping: %s", reason)
        self._stopped.set()

    def stop(self) -> None:
        self.notifier.stopping()
        self._stopped.set()
        self.pipeline.stop()
        for loop in self.loops:
            loop.stop()
        try:
            self._evaluate()  # last word on what the pipeline flushed at stop
        except LewsError as exc:
            log.error("final evaluation failed: %s", exc)
        self._write_status()
        if self.web is not None:
            self.web.stop()
        self.publisher.stop("shutdown")
        self.outbox_depth_at_stop = int(self.publisher.outbox_depth_at_close)
        self.inference_mode_at_stop = self.models.mode
        self.models.close()
        self.store.close()
        log.info("daemon stopped")

    # ---- the wire alarm: mirrored at once -----------------------------------------------------------
    def _on_samples(self, _port: str, samples: Sequence[Sample]) -> None:
        for s in samples:
            if s.channel != "wire.state":
                continue
            with self._lock:
                prev = self._wire
                changed = prev is None or int(prev.state) != int(s.value)
                wi = wire_input(int(s.value), s.t, s.t if changed or prev is None else prev.changed_at)
                if wi is None:
                    self.counters["wire_unknown_state"] += 1
                    continue
                self._wire = wi
            if changed:
                level = 3 if wi.state == WireState.TRIPPED else 0
                self.publisher.publish_wire(int(wi.state), changed_at=wi.changed_at, level=level)
                self.counters["wire_changes"] += 1
                self.loops[0].wake()

    # ---- evaluation -------------------------------------------------------------------------------
    def _maybe_forecast(self, now: float) -> None:
        step = math.floor(now / DAY_S)
        if step <= self._last_forecast_step:
            return
        result = self.forecaster.run(now)
        if result is None:
            return
        self._last_forecast_step = step
        self._forecast = result
        fc = result.forecast
        self.publisher.publish_forecast(
            valid_from=result.valid_from,
            horizon_s=result.horizon_s,
            predicted_mm={"value": fc.displacement_mm, "lo": fc.interval_mm[0], "hi": fc.interval_mm[1]},
            exceedance={f"{k:g}": v for k, v in fc.exceed_prob.items()},
            level=self._last_level(),
            model_version=result.model_version,
            backend=result.backend,
            completeness=fc.completeness,
            thresholds_mm={"primary": fc.threshold_mm},
        )
        self.history.record_forecast(
            t=now,
            valid_from=result.valid_from,
            horizon_s=result.horizon_s,
            value_mm=fc.displacement_mm,
            lo_mm=fc.interval_mm[0],
            hi_mm=fc.interval_mm[1],
            model=result.model_version,
        )

    def _last_level(self) -> int:
        return int(self._last_result.published_level) if self._last_result is not None else 0

    def snapshot(self, now: float, wire: WireInput | None) -> Snapshot:
        """What the engine sees at ``now``; ``wire`` is the reading taken at ``now`` (a frame decoded while
        this snapshot is assembled belongs to the next evaluation, which it wakes)."""
        daily = self.store.last_steps(DAY_S, DISPLACEMENT_STEPS, now)  # closed days: a day's median
        hourly = self.store.last_steps(HOUR_S, 15 * 24, now + HOUR_S)
        window = self.cfg.warning.seismic.max_age_s
        seis = self.store.read_samples(now - window, now + 1.0, ["seismic.pgv_mm_s", "seismic.trigger"])
        rain = rain_input(hourly, now)
        self._maybe_riskmap(rain, now)
        return Snapshot(
            site=self.cfg.site.site,
            wire=wire,
            forecast=self._forecast.input if self._forecast is not None else None,
            displacement=displacement_input(daily),
            rain=rain,
            seismic=seismic_input(seis, now, window),
            spatial=self._spatial,
        )

    def _maybe_riskmap(self, rain: RainInput | None, now: float) -> None:
        """Re-run the U-Net when the rain event changed or the map is older than riskmap_interval_s."""
        if self.riskmapper is None:
            return
        p = rain.event_mean_intensity_mm_h if rain is not None else 0.0
        d = rain.event_duration_h if rain is not None else 0.0
        key = (round(p, 1), round(d))
        due = now - self._riskmap_t >= self.cfg.daemon.riskmap_interval_s
        if key == self._riskmap_key and not due:
            return
        result = self.riskmapper.run(p, d, now)
        if result is None:
            return
        self._riskmap_key, self._riskmap_t, self._spatial = key, now, result.spatial
        save_riskmap(
            self.state_dir, result.probability, t=now, threshold=result.spatial.probability_threshold
        )
        self.publisher.publish_riskmap(
            result.summary,
            level=self._last_level(),
            model_version=result.spatial.model_version,
            completeness=result.spatial.completeness,
        )

    def _model_updates(self) -> None:
        """Stage a bundle dropped into the inbox; switch to a staged one only while the site is at level 0."""
        inbox = self.state_dir / "bundles" / "inbox"
        for entry in sorted(inbox.iterdir()) if inbox.is_dir() else []:
            if entry.name.startswith("."):
                continue  # still being copied (write to .name, then rename)
            try:
                self.models.stage_update(entry)
            except LewsError as exc:
                log.error("model update %s refused: %s", entry.name, exc)
            finally:  # staged (copied into a slot) or refused: either way it leaves the inbox
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink(missing_ok=True)
        if self.models.try_switch(lambda: self._last_level() == 0):
            status = self.models.status()
            self.publisher.set_backend(status["mode"], "normal")

    def request_stop(self) -> None:
        """Ask ``wait()`` to return (signal handlers call this); ``stop()`` then shuts down."""
        self._stopped.set()

    def _evaluate(self) -> None:
        with self._eval_lock:
            self._evaluate_locked()

    def _evaluate_locked(self) -> None:
        now = self.clock()
        with self._lock:
            wire = self._wire
        self._commit_store(now)
        self._model_updates()
        self._maybe_forecast(now)
        result = self.engine.evaluate(self.snapshot(now, wire), now)
        self.publisher.publish_evaluation(result, state=self.engine.state.to_json())
        for ev in result.events:
            self.counters[f"events_{ev.kind}"] += 1
        with self._lock:
            self._last_result = result
            if not self._levels or self._levels[-1] != int(result.published_level):
                self._levels.append(int(result.published_level))
        self.counters["evaluations"] += 1
        self._write_status()

    def _on_ack(self, cmd: VerifiedCommand) -> str:
        req = AckRequest.from_command(cmd)
        with self._eval_lock:
            event = self.engine.acknowledge(req.by, self.clock(), note=req.note, alert_id=req.alert_id)
            self.publisher.publish_alert_event(
                event,
                current_explanation=event.explanation,
                current_level=int(self.engine.state.level),
                current_alert_id=self.engine.state.alert_id,
                acknowledged_by=req.by,
                state=self.engine.state.to_json(),
            )
        return f"acknowledged {event.alert_id} by {req.by}"

    # ---- telemetry, status, watchdog ----------------------------------------------------------------
    def _commit_store(self, now: float, *, steps: bool = True) -> None:
        """Commit queued samples (and, in compressed time, the steps touched). A full or failing store
        must not stop the engine: the store keeps what it could not write and retries; the sources
        whose data is missing become "no data", and the wire alarm (in memory) is still graded."""
        try:
            if steps and self.cfg.daemon.refresh_steps_each_evaluation:
                self.pipeline.refresh_steps(start=min(self._refreshed_until, now) - HOUR_S, end=now)
                self._refreshed_until = now
            self.store.flush()
        except StoreError as exc:
            self.counters["store_unavailable"] += 1
            if self.counters["store_unavailable"] == 1 or self.counters["store_unavailable"] % 100 == 0:
                log.error(
                    "store unavailable (%d times): %s; evaluating with what it holds",
                    self.counters["store_unavailable"],
                    exc,
                )

    def _telemetry(self) -> None:
        """Per-sensor summaries of the samples since the last run (in data time)."""
        now = self.clock()
        start, self._telemetry_from = self._telemetry_from, now
        self._commit_store(
            now, steps=False
        )  # samples stamped before `now` are committed before they are read
        data = self.store.read_samples(start, now)
        with self.publisher.telemetry_batch():  # one outbox commit for the round
            for sensor, channels in TELEMETRY_CHANNELS.items():
                vals = {c: data[c][1] for c in channels if c in data and data[c][1].size}
                if not vals:
                    continue
                summary = {c: float(v.sum() if c == "rain.mm" else v[-1]) for c, v in vals.items()}
                count = max(v.size for v in vals.values())
                self.publisher.publish_telemetry(
                    sensor, summary, window_start=start, window_end=now, completeness=None, count=count
                )

    def levels_seen(self) -> list[int]:
        with self._lock:
            return list(self._levels)

    def status(self) -> dict[str, Any]:
        res = self._last_result
        return {
            "version": __version__,
            "site": self.cfg.site.site,
            "node": self.cfg.site.node,
            "time": self.clock(),
            "published_level": int(res.published_level) if res is not None else None,
            "sources": {k: v.to_dict() for k, v in res.source_levels.items()} if res is not None else {},
            "inference": self.models.status(),
            "forecaster": dict(self.forecaster.counters),
            "pipeline": self.pipeline.counters(),
            "clock": self.timekeeper.status(),
            "publish": self.publisher.stats(),
            "daemon": dict(self.counters),
            "loops": {lp.name: {"runs": lp.runs, "failures": lp.failures} for lp in self.loops},
            "fatal": self.fatal,
        }

    def _write_status(self) -> None:
        try:
            status = self.status()
            write_json_atomic(self.state_dir / "status.json", status)
            self.history.record_status(status)
        except OSError as exc:
            self.counters["status_write_failed"] += 1
            log.warning("status file not written: %s", exc)

    def _progressing(self) -> bool:
        """Real progress: the evaluation loop ran recently and every port thread is alive.

        A silent sensor is not a reason to restart (it is reported as "no data"); a stuck loop is.
        """
        limit = self.cfg.daemon.watchdog_progress_s
        evaluate = self.loops[0]
        loop_ok = math.isfinite(evaluate.last_ok) and time.monotonic() - evaluate.last_ok < limit
        return loop_ok and all(r.running for r in self.pipeline.readers)

    def _watchdog_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s()
        if interval is None:
            return
        while not self._stopped.wait(interval):
            if self._progressing():
                self.notifier.watchdog()
            else:
                self.counters["watchdog_withheld"] += 1
                log.error(
                    "watchdog withheld: no pipeline/evaluation progress for %.0f s",
                    self.cfg.daemon.watchdog_progress_s,
                )
