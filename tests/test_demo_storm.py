"""`agent demo --broker HOST:PORT --json` (the CLI, as a subprocess) end to end against a real mosquitto:
the SYNTHETIC storm scenario (simulators on ptys -> daemon -> outbox -> MQTT), judged only from what a
separate subscriber received and from the JSON summary on the last line of stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.mqtt_checks import alert_events, chain_problems, invalid_payloads, kind_of, unique

from agent.publish.watch import TopicWatcher

DURATION_S = 24.0  # the pace on an idle machine; the demo runs in lockstep with the daemon
DEMO_TIMEOUT_S = 900.0  # a loaded machine is slower (never different): generous, a stuck demo still fails


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_demo(broker: Any, state_dir: Path, *pace: str) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
    """`agent demo --broker ... --json --state-dir DIR PACE...` as a process; what a subscriber got."""
    watcher = TopicWatcher(broker.host, broker.port, "lews/v1/#").start()
    cmd = [sys.executable, "-m", "agent.cli", "demo", *pace, "--json", "--state-dir", str(state_dir)]
    cmd += ["--broker", f"{broker.host}:{broker.port}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DEMO_TIMEOUT_S)
        watcher.wait_for(
            lambda ms: any(kind_of(m.topic) == "status" and b'"offline"' in m.payload for m in ms), 5
        )
    finally:
        watcher.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, watcher.snapshot()


def outcome(received: list[Any]) -> list[tuple[str, int, str, tuple[str, ...]]]:
    """The story a subscriber reads: each alert event's type, level, scenario time and causes."""
    return [
        (e["event_type"], e["level"], e["time"], tuple(sorted(e["event"]["explanation"]["contributing"])))
        for e in alert_events(received)
    ]


@pytest.mark.timeout(2 * DEMO_TIMEOUT_S + 60)
def test_storm_reaches_watch_before_the_wire_and_warning_with_it(mosquitto, tmp_path: Path) -> None:
    proc, received = run_demo(mosquitto, tmp_path / "demo", "--duration", f"{DURATION_S:g}")

    # The same levels, in the same order and at the same scenario times, at another pace (as fast as
    # the machine goes: on a loaded machine too).
    fast, fast_received = run_demo(mosquitto, tmp_path / "fast", "--duration", "0")
    assert outcome(fast_received) == outcome(received)
    assert (
        json.loads(fast.stdout.strip().splitlines()[-1])["levels"]
        == json.loads(proc.stdout.strip().splitlines()[-1])["levels"]
    )

    # The last line of stdout is the JSON summary.
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"messages_published", "max_level", "levels"} <= set(summary)
    assert summary["max_level"] == 3 and summary["levels"][-1] == 3
    assert summary["messages_published"] >= len(unique(received))
    assert summary["outbox_depth_at_stop"] == 0

    # Every payload this subscriber got is valid against its schema (CAP: CAP 1.2 XML) and consistent.
    assert invalid_payloads(received) == []
    assert inconsistent_payloads(unique(received)) == []

    msgs = unique(received)
    wire = [m.json() for m in msgs if kind_of(m.topic) == "wire"]
    tripped = [w for w in wire if w["state"] == 1]
    assert len(tripped) == 1, wire
    assert tripped[0]["level"] == 3
    trip_t = _t(tripped[0]["changed_at"])

    # Retained current alert, in arrival order: >= 2 before the wire trip, 3 with it.
    alerts = [m.json() for m in msgs if kind_of(m.topic) == "alert"]
    before = [a for a in alerts if _t(a["time"]) < trip_t]
    assert max(a["level"] for a in before) >= 2, [(a["time"], a["level"]) for a in alerts]
    raised_by = {src for a in before if a["level"] >= 2 for src in a["explanation"]["contributing"]}
    assert raised_by & {"forecast", "rainfall", "velocity"}, raised_by

    events = alert_events(received)
    assert chain_problems(events) == []
    raising = [e for e in events if e["level"] == 3 and (e["previous_level"] or 0) < 3]
    assert raising, "no event raised level 3"
    first = raising[0]
    assert _t(first["time"]) >= trip_t, f"level 3 before the wire trip: {first['summary']}"
    assert "wire" in first["event"]["explanation"]["contributing"]
    assert "wire" in first["summary"].lower()
    assert alerts[-1]["level"] == 3 and "wire" in alerts[-1]["explanation"]["contributing"]
    # Every event and current alert explains itself.
    assert all(e["summary"] and e["event"]["explanation"]["sources"] for e in events)

    # The state is kept where --workdir said, with a configuration `agent status` reads.
    workdir = Path(summary["workdir"])
    assert workdir == tmp_path / "demo" and (workdir / "store.sqlite").is_file()
    assert "status page: http://" in proc.stderr  # the live view goes to stderr with --json
    status = subprocess.run(
        [sys.executable, "-m", "agent.cli", "status", "--config", summary["config"], "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    doc = json.loads(status.stdout)
    assert doc["running"] is False and "daemon stopped" in doc["message"]  # a clean stop, not STALE
    assert status.returncode == 1


def inconsistent_payloads(msgs: list[Any]) -> list[str]:
    """What a subscriber could misread: exceedance against the interval, expiry, the model named."""
    problems: list[str] = []
    for m in msgs:
        kind = kind_of(m.topic)
        if not m.payload or kind not in ("forecast", "alert", "alert/event"):
            continue
        doc = m.json()
        if kind == "forecast":
            for h in doc["horizons"]:
                for e in h["exceedance"]:
                    where = f"forecast {h['horizon_s']} s: P(> {e['threshold_mm']} mm) = {e['probability']}"
                    if e["threshold_mm"] < h["lo_mm"] and e["probability"] < 0.5:
                        problems.append(f"{where}, low below the interval")
                    if e["threshold_mm"] > h["hi_mm"] and e["probability"] > 0.5:
                        problems.append(f"{where}, high above the interval")
            continue
        exp = doc["explanation"] if kind == "alert" else doc["event"]["explanation"]
        if (doc["level"] > 0) != (doc["expires"] is not None):
            problems.append(f"{kind} level {doc['level']} with expires {doc['expires']}")
        elif doc["expires"] is not None and _t(doc["expires"]) <= _t(doc["time"]):
            problems.append(f"{kind} expires {doc['expires']} before its time {doc['time']}")
        modelled = [exp["models"][s] for s in exp["contributing"] if s in exp["models"]]
        if (doc["model_version"] is None) != (not modelled):
            problems.append(f"{kind} model_version {doc['model_version']} but contributing models {modelled}")
    return problems
