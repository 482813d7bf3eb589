"""Soak: weeks of SYNTHETIC site data (the demo's 55-day storm scenario: GNSS UBX and the firmware bridge
on pseudo-terminals) through the real daemon at compressed time, against a real mosquitto.

While it runs we sample this process's RSS and open file descriptors, the store and outbox file sizes,
the outbox depth and the raw-sample count, and assert they stay bounded: no fd leak, RSS flat in the
second half, the outbox drains to 0 with nothing dropped, and a short retention keeps the raw samples to
the last few (scenario) days. Short form (CI, < 60 s) and long form (`slow`, ~5 min of real time).

The store prunes on a wall-clock hour (PRUNE_EVERY_S); at 10^5x compression that is never, so the
sampler asks for a prune at each tick, as the hourly timer would in real time.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from helpers.broker import Broker

from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.demo.run import SimClock, Simulators, demo_config_data
from agent.demo.scenario import DAY, START_UTC, storm

log = logging.getLogger(__name__)

RETENTION_DAYS = 5.0


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def _raw_samples(store: Path, before: float | None = None) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as conn:
        if before is None:
            return int(conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        return int(conn.execute("SELECT COUNT(*) FROM samples WHERE t < ?", (before,)).fetchone()[0])


def _slope_per_s(xs: list[float], ys: list[float]) -> float:
    return float(np.polyfit(np.asarray(xs), np.asarray(ys, dtype=float), 1)[0])


def run_soak(tmp_path: Path, broker: Broker, real_s: float, every_s: float = 0.25) -> dict[str, Any]:
    """Play the scenario in ``real_s`` seconds; return the samples and the end-of-run facts."""
    scenario = storm()
    speed = scenario.days * DAY / real_s
    sims = Simulators(scenario, speed)
    data = demo_config_data(tmp_path, broker.host, broker.port, sims.gnss_path, sims.bridge_path, speed)
    data["store"]["retention_days"] = RETENTION_DAYS
    clock = SimClock(speed)
    daemon = Daemon(config_from_dict(data), clock=clock, steps_every_s=3600.0)
    store, outbox = Path(data["store"]["path"]), Path(data["mqtt"]["outbox"]["path"])
    proc = psutil.Process(os.getpid())
    rows: list[dict[str, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(every_s):
            daemon.store.prune()
            rows.append({
                "real_s": time.monotonic() - t0,
                "day": (clock() - START_UTC) / DAY,
                "rss_mb": proc.memory_info().rss / 2**20,
                "fds": float(proc.num_fds()),
                "threads": float(proc.num_threads()),
                "store_kb": _size(store) / 1024,
                "outbox_kb": _size(outbox) / 1024,
                "outbox_depth": float(daemon.publisher.outbox.stats()["depth"]),
                "raw_samples": float(_raw_samples(store)),
            })  # fmt: skip

    sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
    cpu0 = proc.cpu_times()
    daemon.start()
    clock.go()
    sims.start()
    sampler.start()
    try:
        while (clock() - START_UTC) / DAY < scenario.days and not daemon.wait(0.2):
            pass
        stop.set()  # sample the steady run only, not the shutdown of the simulators
        sampler.join(5)
        sims.bridge.stop()
        deadline = time.monotonic() + 15
        while daemon.publisher.outbox.stats()["depth"] and time.monotonic() < deadline:
            time.sleep(0.1)
        end_depth = daemon.publisher.outbox.stats()["depth"]
    finally:
        stop.set()
        sampler.join(5)
        daemon.stop()
        sims.stop()
    cpu1 = proc.cpu_times()
    end_t = clock()
    daemon.store.close()
    facts = {
        "scenario_days": scenario.days,
        "real_s": real_s,
        "speed": speed,
        "end_outbox_depth": end_depth,
        "outbox": dict(daemon.publisher.outbox.counters),
        "dropped": dict(+daemon.publisher.outbox.dropped),
        "fatal": daemon.fatal,
        "loop_failures": {lp.name: lp.failures for lp in daemon.scheduler.loops.values()},
        "cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
        # the last prune ran at the last sample's time; allow one scenario day (~0.5 s real) of lag
        "raw_older_than_retention": _raw_samples(
            store, START_UTC + (rows[-1]["day"] - RETENTION_DAYS - 1.0) * DAY if rows else end_t
        ),
        "levels": daemon.levels_seen(),
        "pipeline": daemon.pipeline.counters(),
    }
    return {"rows": rows, "facts": facts}


def check_bounded(result: dict[str, Any]) -> dict[str, float]:
    rows, facts = result["rows"], result["facts"]
    assert len(rows) >= 40, f"too few samples ({len(rows)})"
    assert facts["fatal"] is None and not any(facts["loop_failures"].values()), facts
    # nothing lost on the way out, and the queue is empty at the end
    assert facts["end_outbox_depth"] == 0 and not facts["dropped"], facts
    # every committed message was acknowledged by the broker, or superseded in the queue by a newer one
    # of the same telemetry topic (counted as coalesced: the outbox's documented, counted merge)
    ob = facts["outbox"]
    assert ob["acked"] + ob.get("coalesced", 0) == ob["enqueued"] > 100, ob
    assert max(facts["levels"]) == 3  # the storm really ran: the wire tripped
    half = rows[len(rows) // 2 :]
    xs = [r["real_s"] for r in half]
    span = xs[-1] - xs[0]
    rss_growth = _slope_per_s(xs, [r["rss_mb"] for r in half]) * span
    fds = [r["fds"] for r in half]
    depth_max = max(r["outbox_depth"] for r in rows)
    raw = [r["raw_samples"] for r in rows]
    summary = {
        "rss_mb_start": rows[0]["rss_mb"],
        "rss_mb_half": half[0]["rss_mb"],
        "rss_mb_end": rows[-1]["rss_mb"],
        "rss_growth_second_half_mb": rss_growth,
        "fds_min_second_half": min(fds),
        "fds_max_second_half": max(fds),
        "threads_max": max(r["threads"] for r in rows),
        "outbox_depth_max": depth_max,
        "store_kb_end": rows[-1]["store_kb"],
        "outbox_kb_end": rows[-1]["outbox_kb"],
        "raw_samples_max": max(raw),
        "raw_samples_end": raw[-1],
        "cpu_s": facts["cpu_s"],
        "samples": float(len(rows)),
    }
    log.info("soak summary: %s", json.dumps(summary))
    # bounded: no fd leak, RSS flat in the second half, the queue never piles up
    q = max(1, len(fds) // 4)
    summary["fds_growth_second_half"] = float(np.median(fds[-q:]) - np.median(fds[:q]))
    assert summary["fds_growth_second_half"] <= 2, summary
    assert rss_growth < 0.10 * half[0]["rss_mb"], summary
    assert depth_max < 500, summary
    # retention: raw samples older than the retention are gone; the raw count plateaus
    assert facts["raw_older_than_retention"] == 0, facts["raw_older_than_retention"]
    ingested = sum(v for k, v in facts["pipeline"]["pipeline"].items() if k.startswith("samples."))
    summary["samples_ingested"] = float(ingested)
    assert raw[-1] < 0.3 * ingested, summary  # 5 of 55 days kept (plus steps, which are not raw)
    return summary


@pytest.mark.timeout(120)
def test_soak_short_eight_weeks_in_thirty_seconds(tmp_path: Path, mosquitto: Broker) -> None:
    check_bounded(run_soak(tmp_path, mosquitto, real_s=30.0))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_long_eight_weeks_in_five_minutes(tmp_path: Path, mosquitto: Broker) -> None:
    check_bounded(run_soak(tmp_path, mosquitto, real_s=300.0, every_s=1.0))
