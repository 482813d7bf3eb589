"""Benchmark of the whole daemon under the demo load: wire-trip-to-broker latency and daemon CPU / RSS.

    .venv/bin/python bench/bench_daemon.py [--trips 20] [--scenario-s 25] [--quiet] [--broker HOST:PORT]
        [--json OUT]

The SYNTHETIC storm scenario of `agent demo` (55 days, time-compressed to ``--scenario-s`` real seconds)
plays on pseudo-terminals with ``--trips`` extra wire-alarm trips (each reset 0.2 days later). The daemon
runs as its own process (`agent run` on the simulated clock), so its CPU and memory are measured alone
(psutil, sampled every 0.25 s). Latency: from the moment the simulated bridge writes a WIRE frame with
a new state to the pty, to the moment a separate MQTT subscriber (in this process) receives the `wire`
message with that state, through a local mosquitto on loopback. The last line of stdout is one JSON
object with every figure. ``--quiet``: the same path on an idle daemon at real time (the scenario's
first calm minute, a wire change every 0.5 s), for the latency without the compressed load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import typer

from agent.demo.harness import SubprocessSite
from agent.demo.scenario import DAY, START_UTC, WIRE_TRIP_DAY, DemoScenario, storm
from agent.publish.broker import LocalBroker, start_local_broker
from agent.publish.watch import Received, TopicWatcher
from firmware_bridge.messages import Wire, WireState
from firmware_bridge.pty_device import PtyDevice
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import WireChange

app = typer.Typer(add_completion=False)


class StampedBridge(PtyDevice):
    """The simulated bridge, noting the wall-clock time at which each wire-state change is written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changes: list[tuple[float, int]] = []  # (epoch s just before the write, new state)
        self._decoder = FrameDecoder(name="bench-tap")
        self._state: int | None = None
        self._tap_lock = threading.Lock()

    def _write(self, data: bytes) -> None:
        t = time.time()
        with self._tap_lock:
            self._decoder.feed(data)
            for frame in self._decoder.frames():
                msg = frame.message
                if isinstance(msg, Wire) and int(msg.state) != self._state:
                    self._state = int(msg.state)
                    self.changes.append((t, int(msg.state)))
        super()._write(data)


def scenario_with_trips(trips: int) -> DemoScenario:
    """The storm with ``trips`` extra trip/reset pairs spread over days 2..50 (the storm's own trip stays)."""
    base = storm()
    changes: list[WireChange] = []
    for i in range(trips):
        day = 2.0 + i * (48.0 / max(trips, 1))
        changes += [WireChange(day * DAY, WireState.TRIPPED), WireChange((day + 0.2) * DAY, WireState.INTACT)]
    changes.append(WireChange(WIRE_TRIP_DAY * DAY, WireState.TRIPPED))
    bridge = dataclasses.replace(base.bridge, wire=tuple(changes))
    return dataclasses.replace(base, bridge=bridge)


def quiet_scenario(trips: int, spacing_s: float) -> DemoScenario:
    """The storm scenario's first minutes at real time (calm: no GNSS epoch, rain or heartbeat due yet)
    with a wire change every ``spacing_s``: the wire path on an otherwise idle daemon."""
    base = storm()
    changes: list[WireChange] = []
    for i in range(trips):
        t = 2.0 + 2 * i * spacing_s
        changes += [WireChange(t, WireState.TRIPPED), WireChange(t + spacing_s, WireState.INTACT)]
    bridge = dataclasses.replace(base.bridge, wire=tuple(changes))
    return dataclasses.replace(base, bridge=bridge)


def _latencies(
    changes: list[tuple[float, int]], received: list[Received], to_wall: Callable[[float], float]
) -> dict[str, list[float]]:
    """Per change: the first `wire` message with that state received after it was written. Also split
    at the payload's own ``time`` (the daemon's clock when it built the message, mapped to wall time by
    ``to_wall``): ``ingest`` = pty write -> payload built (read, decode, dispatch), ``publish`` = payload
    built -> received (outbox commit with fsync, MQTT, broker, subscriber)."""
    wire = []
    for m in received:
        if m.topic.endswith("/wire") and m.payload:
            doc = m.json()
            built = to_wall(datetime.fromisoformat(doc["time"].replace("Z", "+00:00")).timestamp())
            wire.append((m.t, int(doc["state"]), built))
    out: dict[str, list[float]] = {"trip": [], "reset": [], "ingest": [], "publish": []}
    used: set[int] = set()
    for t_write, state in changes[1:]:  # the first is the state at power-up
        for i, (t_recv, s, built) in enumerate(wire):
            if i not in used and s == state and t_recv >= t_write:
                used.add(i)
                out["trip" if state == WireState.TRIPPED else "reset"].append((t_recv - t_write) * 1e3)
                out["ingest"].append((built - t_write) * 1e3)
                out["publish"].append((t_recv - built) * 1e3)
                break
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": _pct(values, 0.5),
        "p99_ms": _pct(values, 0.99),
        "max_ms": round(max(values), 2) if values else None,
        "mean_ms": round(statistics.fmean(values), 2) if values else None,
    }


def bench_daemon(
    trips: int = 20,
    scenario_s: float = 25.0,
    broker: str | None = None,
    workdir: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the daemon under the demo load (``quiet``: at real time, wire changes only); returns the
    figures (see the module docstring)."""
    local: LocalBroker | None = None
    if broker:
        host, _, port_text = broker.rpartition(":")
        port = int(port_text)
    else:
        local = start_local_broker()
        host, port = local.host, local.port
    if quiet:
        spacing_s = 0.5
        scenario, speed = quiet_scenario(trips, spacing_s), 1.0
        scenario_s = 2.0 + 2 * trips * spacing_s + 1.0
    else:
        scenario = scenario_with_trips(trips)
        speed = scenario.days * DAY / scenario_s
    tmp = tempfile.TemporaryDirectory(prefix="lews-bench-daemon-") if workdir is None else None
    root = Path(tmp.name) if tmp is not None else (workdir or Path("."))
    bridge = StampedBridge(scenario.bridge, speed=speed)
    site = SubprocessSite(scenario, root, host, port, speed, bridge=bridge)
    watcher = TopicWatcher(host, port, "lews/v1/#").start()
    samples: list[tuple[float, float, int, int]] = []  # (t, cpu s, rss bytes, threads)
    try:
        site.start()
        if site.daemon is None:
            raise RuntimeError("daemon not started")
        proc = psutil.Process(site.daemon.pid)
        cpu0 = proc.cpu_times()
        t0 = time.monotonic()
        end = t0 + scenario_s + 1.0
        while time.monotonic() < end:
            ct = proc.cpu_times()
            samples.append(
                (
                    time.monotonic() - t0,
                    ct.user + ct.system - cpu0.user - cpu0.system,
                    proc.memory_info().rss,
                    proc.num_threads(),
                )
            )
            time.sleep(0.25)
        status = json.loads((site.state_dir / "status.json").read_text(encoding="utf-8"))
    finally:
        code = site.stop()
        time.sleep(0.5)
        watcher.stop()
        if local is not None:
            local.stop()
    received = watcher.snapshot()
    lat = _latencies(bridge.changes, received, lambda t: site.anchor_wall + (t - START_UTC) / speed)
    wall = samples[-1][0] if samples else float("nan")
    cpu_s = samples[-1][1] if samples else float("nan")
    result = {
        "benchmark": "daemon",
        "synthetic": True,
        "mode": "quiet (real time, wire changes only)" if quiet else "demo load (time-compressed storm)",
        "scenario": scenario.describe() + f"; plus {trips} trip/reset pairs",
        "speed_x": round(speed),
        "scenario_real_s": scenario_s,
        "wire_changes_written": len(bridge.changes) - 1,
        "wire_trip_latency": _summary(lat["trip"]),
        "wire_reset_latency": _summary(lat["reset"]),
        "wire_all_latency": _summary(lat["trip"] + lat["reset"]),
        "wire_ingest_part": _summary(lat["ingest"]),
        "wire_publish_part": _summary(lat["publish"]),
        "time_resolution_ms": round(1.0 / speed, 6),  # payload times: 1 ms of scenario time
        "daemon_cpu_s": round(cpu_s, 2),
        "daemon_wall_s": round(wall, 2),
        "daemon_cpu_percent_of_one_core": round(100.0 * cpu_s / wall, 1) if wall else None,
        "daemon_rss_mb_max": round(max(s[2] for s in samples) / 2**20, 1) if samples else None,
        "daemon_rss_mb_end": round(samples[-1][2] / 2**20, 1) if samples else None,
        "daemon_threads": max(s[3] for s in samples) if samples else None,
        "messages_received": len(received),
        "outbox_enqueued": status["publish"]["outbox"]["enqueued"],
        "daemon_exit_code": code,
        "bench_threads": "simulators: 2 (bridge, gnss) + MQTT subscriber 1, in the benchmark process",
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
    }
    if tmp is not None:
        tmp.cleanup()
    return result


@app.command()
def main(
    trips: int = typer.Option(20, help="Extra wire trip/reset pairs during the scenario."),
    scenario_s: float = typer.Option(25.0, help="Real seconds the 55 scenario days take."),
    broker: str | None = typer.Option(None, help="HOST:PORT of a broker (default: a local mosquitto)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures to this file."),
    quiet: bool = typer.Option(False, help="Real time, only wire changes (every 0.5 s): the idle path."),
) -> None:
    result = bench_daemon(trips=trips, scenario_s=scenario_s, broker=broker, quiet=quiet)
    text = json.dumps(result)
    if json_out is not None:
        json_out.write_text(text + "\n", encoding="utf-8")
    typer.echo(text)


if __name__ == "__main__":
    app()
