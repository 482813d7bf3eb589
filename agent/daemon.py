"""The gateway daemon (`agent run`): sensors -> store -> forecast -> warning engine -> outbox -> MQTT.

A composition of small jobs (agent/jobs/, one module each) run by one scheduler
(agent/jobs/scheduler.py):

- ``wire`` (port threads): the wire alarm's state published the moment it is decoded, graded by the
  engine's wire rule, before and independently of the evaluation loop;
- loop ``evaluate`` (every ``daemon.evaluate_interval_s`` and at once on a wire change): store commit,
  disk check, model updates, forecast, risk map, warning engine (critical), status file;
- loop ``telemetry`` (every ``daemon.telemetry_interval_s``);
- loop ``watchdog`` (only when systemd set a watchdog): pings only on real progress.

Construction opens the store and the outbox but starts no thread; ``start()`` starts the components in
order and, when one fails, stops those already started (newest first) before it re-raises; ``stop()``
stops everything, each component in its own ``try``. See docs/daemon.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent import __version__
from agent.config import AgentConfig, StatePaths
from agent.errors import LewsError, StoreError
from agent.features.aggregate import DAY_S, HOUR_S
from agent.features.store import Store
from agent.forecaster import Forecaster
from agent.history import HISTORY_FILE, History
from agent.inference.heap import release_freed_memory
from agent.inference.manager import ModelManager
from agent.jobs.disk import DiskJob
from agent.jobs.evaluate import EvaluationJob
from agent.jobs.forecast import ForecastJob
from agent.jobs.models import ModelUpdatesJob
from agent.jobs.riskmap import RiskMapJob
from agent.jobs.scheduler import Lifecycle, Scheduler, Step
from agent.jobs.status import StatusJob
from agent.jobs.telemetry import TelemetryJob
from agent.jobs.watchdog import WatchdogJob
from agent.jobs.wire import WireMirror
from agent.publish.publisher import Publisher
from agent.publish.sensor_ids import sensor_identities
from agent.riskmap import RiskMapper, load_site_raster
from agent.sdnotify import Notifier
from agent.sensors.clock import ClockDiscipline
from agent.sensors.pipeline import Pipeline
from agent.web.server import StatusApp, StatusServer

log = logging.getLogger(__name__)


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
        self.counters: Counter[str] = Counter()
        self.fatal: str | None = None
        self.outbox_depth_at_stop = -1  # messages still queued when the daemon stopped (-1: running)
        self.inference_mode_at_stop = ""
        self.web: StatusServer | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._refreshed_until = clock()
        self.lifecycle = Lifecycle()
        try:
            self._compose(steps_every_s)
        except BaseException:
            self.lifecycle.stop_all()  # close what was opened (store, outbox) before re-raising
            raise

    # ---- composition ------------------------------------------------------------------------------
    def _compose(self, steps_every_s: float) -> None:
        cfg, clock = self.cfg, self.clock
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.store, clock=clock)
        self.lifecycle.owns("store", self.store.close)
        inference = cfg.inference
        if inference.state_dir is None:
            inference = inference.model_copy(update={"state_dir": self.state_dir / "bundles"})
        self.models = ModelManager(inference)
        self.lifecycle.owns("models", self._close_models)
        self.forecaster = Forecaster(self.store, self.models, step_s=DAY_S, settings=cfg.warning.forecast)
        self.history = History(self.state_dir / HISTORY_FILE)  # levels and forecasts for report / page
        raster = cfg.daemon.site_raster
        self.riskmapper = RiskMapper(load_site_raster(raster), self.models) if raster is not None else None
        self.publisher = Publisher(
            cfg.mqtt,
            site=cfg.site.site,
            node=cfg.site.node,
            agent_version=__version__,
            clock=clock,
            handlers={"ack": lambda cmd: self.evaluation.on_ack(cmd)},
            sensors=sensor_identities(cfg.sensors),
            validity_s={lvl: cfg.warning.alert.validity_s.for_level(lvl) for lvl in (1, 2, 3)},
        )
        self.lifecycle.owns("publisher", self._stop_publisher)
        level = self._last_level
        self.forecast = ForecastJob(self.forecaster, self.publisher, self.history, level, clock)
        self.riskmap = RiskMapJob(
            self.riskmapper, self.store, self.publisher, self.state_dir, cfg.daemon.riskmap_interval_s,
            level, clock,
        )  # fmt: skip
        self.wire = WireMirror(
            self.publisher.publish_wire, lambda w: self.evaluation.wire_level(w), self._wire_changed
        )
        self.evaluation = EvaluationJob(
            cfg,
            self.store,
            self.publisher,
            wire=self.wire.current,
            forecast=lambda: self.forecast.input,
            spatial=lambda: self.riskmap.spatial,
            clock=clock,
            counters=self.counters,  # evaluations, events_*, engine_state_unreadable
        )
        self.model_updates = ModelUpdatesJob(
            self.models, self.publisher, self.state_dir / "bundles" / "inbox", level
        )
        self.disk = DiskJob(
            [self.state_dir, cfg.store.path.parent, cfg.mqtt.outbox.path.parent], self.store, self.publisher
        )
        self.status_job = StatusJob(self.state_dir / "status.json", self.history, self.status)
        self.telemetry = TelemetryJob(self.store, self.publisher, self._commit_samples, clock)
        self.pipeline = Pipeline(
            cfg.sensors, self.store, clock=clock, discipline=self.timekeeper, steps_every_s=steps_every_s,
            daily_every_s=steps_every_s, hourly=True,
        )  # fmt: skip
        self.pipeline.subscribe(self.wire.on_samples)
        self.scheduler = Scheduler(self._on_fatal, max_restarts=cfg.daemon.max_worker_restarts)
        self._evaluate_steps = [
            Step("commit", self._commit_store),
            Step("disk", self.disk.run),
            Step("models", self.model_updates.run),
            Step("forecast", self.forecast.run),
            Step("riskmap", self.riskmap.run),
            Step("evaluate", self.evaluation.run, critical=True),
            Step("status", self.status_job.run),
        ]
        self.evaluate_loop = self.scheduler.every(
            "evaluate", cfg.daemon.evaluate_interval_s, self._evaluate_steps
        )
        self.scheduler.every(
            "telemetry", cfg.daemon.telemetry_interval_s, [Step("telemetry", self.telemetry.run, True)]
        )
        self.watchdog = WatchdogJob(
            self.notifier, cfg.daemon.watchdog_progress_s, lambda: self.evaluate_loop.last_ok, self._alive
        )
        interval = self.notifier.watchdog_interval_s()
        if interval is not None:
            self.scheduler.every("watchdog", interval, [Step("watchdog", self.watchdog.run)])

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start in order: store writer, models, retained state, MQTT, ports, loops, status page."""
        life = self.lifecycle
        try:
            life.start("store writer", self.store.start, lambda: None)
            life.start("models", self._start_models, lambda: None)
            self.wire.restore(self.publisher.retained.last("wire"))
            # first pass before the link starts: the retained alert it re-publishes at connect is current
            self._run_steps(self._evaluate_steps)
            self.evaluation.publish_current()
            life.start("publisher", self.publisher.start, lambda: None)
            life.start("final evaluation", lambda: None, self._final_evaluation)
            life.start("pipeline", self.pipeline.start, self.pipeline.stop)
            life.start("scheduler", self.scheduler.start, self.scheduler.stop)
            if self.cfg.web.enabled:
                life.start("status page", self._start_web, self._stop_web)
        except BaseException:
            self._stopped.set()
            life.stop_all()
            raise
        mode = self.models.mode
        self.notifier.ready(f"running, inference {mode}")
        log.info(
            "daemon started: site %s node %s, inference %s", self.cfg.site.site, self.cfg.site.node, mode
        )

    def _start_models(self) -> None:
        # verifying the bundle (signature, hashes, golden vectors) and loading engines comes first
        self.notifier.extend_timeout(why="verifying the model bundle")
        status = self.models.start()
        # verifying the bundle ran every golden vector: give back what that freed (~13 MiB RSS)
        release_freed_memory()
        self.publisher.set_backend(
            status["mode"], "normal" if status["mode"] != "rules_only" else "rules_only"
        )

    def _close_models(self) -> None:
        self.inference_mode_at_stop = self.models.mode
        self.models.close()

    def _stop_publisher(self) -> None:
        self.publisher.stop("shutdown")
        self.outbox_depth_at_stop = int(self.publisher.outbox_depth_at_close)

    def _start_web(self) -> None:
        app = StatusApp(
            StatePaths.from_config(self.cfg), self.cfg.web, warning=self.cfg.warning, site=self.cfg.site.site
        )
        self.web = StatusServer(app).start()

    def _stop_web(self) -> None:
        if self.web is not None:
            self.web.stop()

    def _final_evaluation(self) -> None:
        """Last word on what the pipeline flushed at stop (runs after the ports and loops stopped)."""
        try:
            self.evaluation.run()
        except LewsError as exc:
            log.error("final evaluation failed: %s", exc)
        self.status_job.run()

    def _run_steps(self, steps: list[Step]) -> None:
        """One pass of ``steps`` at start; a failure is logged (the loop runs them again at once)."""
        for step in steps:
            try:
                step.run()
            except Exception as exc:  # never a reason not to start: the supervised loop retries
                self.counters["start_pass_failed"] += 1
                log.error("%s at start failed: %s", step.name, exc)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _on_fatal(self, reason: str) -> None:
        self.fatal = reason
        log.critical("stopping: %s", reason)
        self._stopped.set()

    def stop(self) -> None:
        """Stop everything started, newest first (each in its own try); idempotent."""
        with self._stop_lock:
            self.notifier.stopping()
            self._stopped.set()
            self.lifecycle.stop_all()
        log.info("daemon stopped")

    # ---- job glue ---------------------------------------------------------------------------------
    def _wire_changed(self) -> None:
        self.evaluate_loop.wake()

    def _last_level(self) -> int:
        return self.evaluation.level()

    def levels_seen(self) -> list[int]:
        return self.evaluation.levels_seen()

    def _commit_store(self) -> None:
        self._commit_samples(self.clock(), steps=True)

    def _commit_samples(self, now: float, *, steps: bool = False) -> None:
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
            n = self.counters["store_unavailable"]
            if n == 1 or n % 100 == 0:
                log.error("store unavailable (%d times): %s; evaluating with what it holds", n, exc)

    def _alive(self) -> dict[str, bool]:
        """Liveness of every worker thread the watchdog vouches for."""
        alive = {f"serial-{r.name}": bool(r.running) for r in self.pipeline.readers}
        stepper = self.pipeline._stepper
        alive["pipeline-steps"] = stepper is not None and stepper.is_alive()
        alive["store-writer"] = self.store.writer_alive
        alive.update({name: lp.alive for name, lp in self.scheduler.loops.items() if name != "watchdog"})
        return alive

    # ---- status -----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        res = self.evaluation.last
        wire = self.wire.current()
        return {
            "version": __version__,
            "site": self.cfg.site.site,
            "node": self.cfg.site.node,
            "time": self.clock(),
            "published_level": int(res.published_level) if res is not None else None,
            "sources": {k: v.to_dict() for k, v in res.source_levels.items()} if res is not None else {},
            "wire": None if wire is None else {"state": int(wire.state), "changed_at": wire.changed_at},
            "inference": self.models.status(),
            "forecaster": dict(self.forecaster.counters),
            "pipeline": self.pipeline.counters(),
            "clock": self.timekeeper.status(),
            "publish": self.publisher.stats(),
            "disk": self.disk.state,
            "daemon": {
                **self.counters,
                **self.status_job.counters,
                **{f"wire_{k}": v for k, v in self.wire.counters.items()},
                **{f"watchdog_{k}": v for k, v in self.watchdog.counters.items()},
                **{f"step_failed.{k}": v for k, v in self.scheduler.step_failures.items()},
            },
            "loops": self.scheduler.stats(),
            "worker_restarts": self.scheduler.restarts,
            "max_worker_restarts": self.cfg.daemon.max_worker_restarts,
            "fatal": self.fatal,
            "stopped": self._stopped.is_set(),  # the last status.json of a clean stop says so
        }
