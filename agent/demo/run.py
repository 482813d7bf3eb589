"""`agent demo`: simulated devices on pseudo-terminals -> the real daemon -> a real MQTT broker.

Time is compressed: the SYNTHETIC storm scenario (weeks) plays in about ``duration`` seconds. The
simulators and the daemon share one simulated clock, so every timestamp, step and rule sees scenario
time. The demo's configuration scales the freshness limits to that compression (see ``demo_config``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import tty
from collections import Counter
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, config_from_dict
from agent.daemon import Daemon
from agent.demo.lockstep import Lockstep
from agent.demo.scenario import DAY, REFERENCE, START_UTC, DemoScenario, storm
from agent.demo.view import LiveView
from agent.errors import ConfigError
from agent.publish.broker import LocalBroker, start_local_broker
from agent.publish.watch import Received, TopicWatcher
from agent.sensors.clock import SimClock as _SimClock
from agent.sensors.gnss_sim import write_to_fd
from firmware_bridge.simulator import PtyDevice

log = logging.getLogger(__name__)

REPO_BUNDLE = Path(__file__).resolve().parents[2] / "bundles"
LOCKSTEP_EVALUATE_S = 3600.0  # real seconds: in lockstep the driver wakes each evaluation itself


class SimClock(_SimClock):
    """:class:`agent.sensors.clock.SimClock` starting at the demo scenario's ``START_UTC`` by default."""

    def __init__(self, speed: float, start_utc: float = START_UTC, anchor_wall: float | None = None) -> None:
        super().__init__(speed, start_utc, anchor_wall)


class Simulators:
    """The demo site's simulated devices, each on its own pseudo-terminal: the firmware bridge (rain,
    heartbeat, wire alarm) and the GNSS receiver (UBX). ``start()`` starts both at scenario time 0."""

    def __init__(self, scenario: DemoScenario, speed: float, bridge: PtyDevice | None = None) -> None:
        self.scenario, self.speed = scenario, speed
        self.gnss_master, self.gnss_slave = os.openpty()
        tty.setraw(self.gnss_slave)
        self.gnss_path = os.ttyname(self.gnss_slave)
        self.bridge = bridge if bridge is not None else PtyDevice(scenario.bridge, speed=speed)
        self._gnss = threading.Thread(target=self._write_gnss, name="gnss-sim", daemon=True)

    @property
    def bridge_path(self) -> str:
        return self.bridge.port

    def _write_gnss(self) -> None:
        with contextlib.suppress(OSError):  # the pty closed at stop()
            write_to_fd(self.gnss_master, self.scenario.gnss, speed=self.speed)

    def start(self) -> Simulators:
        self.bridge.start()
        self._gnss.start()
        return self

    def stop(self) -> None:
        self.bridge.stop()
        for fd in (self.gnss_master, self.gnss_slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def demo_config(
    workdir: Path,
    host: str,
    port: int,
    gnss_path: str,
    bridge_path: str,
    speed: float,
    protocol: str = "auto",
) -> AgentConfig:
    """The agent configuration of the demo site (freshness limits scaled to the time compression)."""
    return config_from_dict(demo_config_data(workdir, host, port, gnss_path, bridge_path, speed, protocol))


def demo_config_data(
    workdir: Path,
    host: str,
    port: int,
    gnss_path: str,
    bridge_path: str,
    speed: float,
    protocol: str = "auto",
) -> dict[str, Any]:
    """:func:`demo_config` as plain data (what a TOML file for ``agent run`` holds)."""
    hour = 3600.0
    stale = max(6 * hour, speed * 2.0)  # at least two real seconds of scenario time
    data: dict[str, Any] = {
        "site": {"site": "demo-site", "node": "gw1", "description": "SYNTHETIC demo site"},
        "daemon": {
            "state_dir": str(workdir / "state"),
            "evaluate_interval_s": 0.1,
            "telemetry_interval_s": 1.0,
            "refresh_steps_each_evaluation": True,
            "site_raster": str(REPO_BUNDLE / "demo-site" / "site_raster.npz"),
            "riskmap_interval_s": 2 * DAY,  # and whenever the rain event changes (agent/jobs/riskmap.py)
        },
        "sensors": {
            # at least 2 real seconds of read latency in compressed time (a wall-paced run on a loaded
            # machine); the lockstep demo (speed 0) keeps the gateway's defaults
            "max_sample_lag_s": max(3600.0, speed * 2.0),
            "ports": [
                {"name": "gnss", "path": gnss_path, "kind": "gnss"},
                {"name": "bridge", "path": bridge_path, "kind": "bridge"},
            ],
            "gnss": {
                "reference": {"lat": REFERENCE.lat, "lon": REFERENCE.lon, "h_m": REFERENCE.h_m},
                "epoch_rate_hz": 1.0 / 900.0,
                # a simulated clock: real latency x the speed would look like a wrong system clock
                "discipline_clock": False,
            },
            "rain": {"frame_period_s": 900.0, "max_gap_s": 4 * hour},
            "device": {"heartbeat_period_s": 1800.0},
        },
        "store": {"path": str(workdir / "store.sqlite")},
        # any free port: a demo (or a test running one) must not fail because 8080 is taken; the
        # daemon logs the page's URL ("status page on http://...")
        "web": {"port": 0},
        "inference": {
            "bundle_dir": str(REPO_BUNDLE / "demo"),
            "public_key": str(REPO_BUNDLE / "demo-keys" / "signing.pub"),
        },
        "warning": {
            "wire": {"max_age_s": max(3 * 1800.0, stale)},  # the bridge reports it with every heartbeat
            "velocity": {"max_age_s": 2 * DAY},
            "inverse_velocity": {"max_age_s": 2 * DAY},
            "rainfall": {"max_age_s": stale, "min_completeness": 0.5},
            # the demo site's forecast thresholds are its velocity thresholds over the 1-day horizon
            # (advisory 1, watch 5, warning 20 mm/day): a forecast of the surge (~6-10 mm/day) is a watch
            "forecast": {
                "max_age_s": 2 * DAY,
                "displacement_mm": {"advisory": 2.0, "watch": 5.0, "warning": 20.0},
            },
        },
        "mqtt": {
            "host": host,
            "port": port,
            "protocol": protocol,  # amqtt: 3.1.1 at once (it does not answer an MQTT 5 CONNECT)
            "status_interval_s": 5.0,
            "outbox": {"path": str(workdir / "outbox.sqlite")},
            # the demo is no real warning: CAP status Test (and `agent diagnose` accepts the demo key)
            "cap": {"status": "Test"},
        },
    }
    return data


def _start_broker(broker: str | None) -> tuple[str, int, LocalBroker | None]:
    """An external HOST:PORT, or a local broker (mosquitto when installed, else amqtt in-process)."""
    if broker:
        host, _, port = broker.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--broker {broker!r} is not HOST:PORT", fix="e.g. --broker 127.0.0.1:1883")
        return host, int(port), None
    local = start_local_broker()
    return local.host, local.port, local


def _summary(
    messages: list[Received], daemon: Daemon, scenario: DemoScenario, broker_kind: str
) -> dict[str, Any]:
    topics: Counter[str] = Counter()
    levels: list[int] = []
    for m in messages:
        kind = m.topic.split("/", 4)[-1]
        topics[kind] += 1
        if kind == "alert" and m.payload and not m.retain:  # not a retained one left by an earlier run
            level = int(m.json().get("level", 0))
            if not levels or levels[-1] != level:
                levels.append(level)
    wire_msgs = [m for m in messages if m.topic.endswith("/wire") and not m.retain]
    return {
        "synthetic": True,
        "signing_key": "DEMO (bundles/demo-keys: its private half is public, never use it on a site)",
        "scenario": scenario.describe(),
        "broker": broker_kind,
        "messages_published": len(messages),
        "messages_by_topic": dict(sorted(topics.items())),
        "levels": levels,
        "max_level": max(levels, default=0),
        "engine_levels": daemon.levels_seen(),
        "wire_messages": len(wire_msgs),
        "inference": daemon.inference_mode_at_stop,
        "forecasts": daemon.forecaster.counters.get("forecasts", 0),
        "outbox_depth_at_stop": daemon.outbox_depth_at_stop,
    }


def run_demo(
    *, duration: float, broker: str | None, json_out: bool, speed: float, workdir: Path | None
) -> int:
    """The demo in lockstep (agent/demo/lockstep.py): same levels in the same order on any machine.

    ``duration`` (or ``speed``, scenario seconds per real second) sets the pace on an idle machine; a
    loaded machine takes longer and publishes the same."""
    scenario = storm()
    pace = DAY / speed if speed > 0 else max(duration, 0.0) / scenario.days
    root = Path(tempfile.mkdtemp(prefix="lews-demo-")) if workdir is None else workdir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the demo folder {root}: {exc}", fix="pass --state-dir DIR") from exc
    out = sys.stderr if json_out else sys.stdout
    host, port, local = _start_broker(broker)
    view = LiveView(out, scenario)
    watcher = TopicWatcher(host, port, "lews/v1/#", on_receive=view.on_message).start()
    site = Lockstep(scenario, START_UTC)
    protocol = "3.1.1" if local is not None and local.kind == "amqtt" else "auto"
    data = demo_config_data(root, host, port, site.gnss.path, site.bridge.path, 0.0, protocol)
    data["daemon"]["evaluate_interval_s"] = LOCKSTEP_EVALUATE_S  # the driver runs each evaluation
    cfg = config_from_dict(data)
    config_file = write_config_file(root, cfg)
    daemon = Daemon(cfg, clock=site.clock, steps_every_s=3600.0)
    view.header(
        DAY / pace if pace > 0 else 0.0,
        f"{local.kind} on {host}:{port}" if local else f"broker {host}:{port}",
        root,
    )
    stop = threading.Event()
    try:
        daemon.start()
        view.page(daemon.web.url if daemon.web is not None else None)

        def on_step(t: float) -> None:
            view.tick(t, daemon)
            if daemon.wait(0):
                stop.set()

        site.run(
            daemon.pipeline.stats_snapshot,
            daemon.evaluate_loop.run_once,
            ports_open=lambda: all(r.counters.connected for r in daemon.pipeline.readers),
            stop=stop,
            pace_s_per_day=pace,
            on_step=on_step,
        )
    finally:
        drain_until = time.monotonic() + 10.0  # let the outbox empty before stopping (it would keep them)
        while daemon.publisher.outbox.stats()["depth"] and time.monotonic() < drain_until:
            time.sleep(0.05)
        daemon.stop()
        watcher.wait_for(
            lambda ms: any(m.topic.endswith("/status") and b'"offline"' in m.payload for m in ms), 5
        )
        watcher.stop()
        messages = watcher.snapshot()
        if local is not None:
            local.stop()
        site.close()
    summary = _summary(messages, daemon, scenario, local.kind if local else "external")
    summary.update(
        workdir=str(root),
        config=str(config_file),
        lockstep={"steps": site.steps, "evaluations": site.evaluations,
                  "drain_s": round(site.drain_s, 1), "evaluate_s": round(site.evaluate_s, 1)},
    )  # fmt: skip
    view.final(summary)
    view.afterwards(root, config_file)
    if json_out:
        sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
    return 0 if daemon.fatal is None else 1


def write_config_file(root: Path, cfg: AgentConfig) -> Path:
    """The demo daemon's configuration as ``root/agent.toml``, for `agent status` / `agent report` later."""
    import tomli_w

    path = root / "agent.toml"
    data = cfg.model_dump(mode="json", exclude_none=True)
    try:
        path.write_text(
            "# agent demo: SYNTHETIC site (the ports were pseudo-terminals)\n" + tomli_w.dumps(data)
        )
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}", fix="pass --workdir DIR on a writable disk") from exc
    return path
