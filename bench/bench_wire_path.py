"""The wire message's publish leg, send-first against outbox-first, in ONE run under a CPU hog.

    .venv/bin/python bench/bench_wire_path.py [--n 100] [--hogs N] [--json OUT]

One Publisher on a local mosquitto (outbox ``synchronous=FULL``), one subscriber. Each round
publishes a wire change in turn through the two paths, so both see the same machine:

- ``send_first``: ``Publisher.publish_wire`` (the daemon's path: PUBLISH at once, then the fsync'd
  commit, validation after);
- ``outbox_first``: ``Publisher.enqueue("wire", ...)`` (validation, fsync'd commit, then the sender
  thread publishes it: the path before issue 18).

Latency: ``publish_*`` called -> the subscriber has the message. ``--hogs`` busy processes (default
one per CPU) run throughout; the load average is recorded. Last stdout line: one JSON object.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import _summary
from memlib import load

from agent.publish.broker import start_local_broker
from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.publish.watch import TopicWatcher

HOG = "while True:\n    pass\n"


def _more_than(n: int, msgs: list[Any]) -> bool:
    return len(msgs) > n


def run(n: int, hogs: int) -> dict[str, Any]:
    broker = start_local_broker("auto")
    hog_procs: list[subprocess.Popen[bytes]] = []
    lat: dict[str, list[float]] = {"send_first": [], "outbox_first": []}
    try:
        with tempfile.TemporaryDirectory(prefix="lews-bench-wire-") as d:
            settings = MqttSettings.model_validate(
                {"port": broker.port, "outbox": {"path": str(Path(d) / "outbox.sqlite")}}
            )
            pub = Publisher(settings, site="bench", node="gw", agent_version="0")
            with TopicWatcher(broker.host, broker.port, "lews/v1/bench/gw/wire") as watch:
                pub.start()
                if not pub.link.connected.wait(20):
                    raise RuntimeError("no broker connection")
                hog_procs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(hogs)]
                load_start = load()
                for i in range(n):
                    for path in ("send_first", "outbox_first"):
                        before = len(watch.snapshot())
                        t0 = time.time()
                        state = (2 * i + (path == "outbox_first")) % 2
                        if path == "send_first":
                            pub.publish_wire(state, changed_at=t0, level=3 * state)
                        else:
                            pub.enqueue("wire", pub.factory.wire(state, changed_at=t0, level=3 * state))
                        got = watch.wait_for(functools.partial(_more_than, before), 10)
                        lat[path].append((got[before].t - t0) * 1e3)
                        time.sleep(0.05)
                load_end = load()
                pub.stop()
    finally:
        for h in hog_procs:
            h.kill()
            h.wait(10)
        broker.stop()
    s, o = _summary(lat["send_first"]), _summary(lat["outbox_first"])
    return {
        "benchmark": "wire_path",
        "n_per_path": n,
        "hogs": hogs,
        "send_first": s,
        "outbox_first": o,
        "p50_ratio_outbox_over_send": round(o["p50_ms"] / s["p50_ms"], 2) if s["p50_ms"] else None,
        "p99_ratio_outbox_over_send": round(o["p99_ms"] / s["p99_ms"], 2) if s["p99_ms"] else None,
        "load": {"start": load_start, "end": load_end},
    }


def main(
    n: int = typer.Option(100, help="Wire changes per path."),
    hogs: int | None = typer.Option(None, help="Busy processes (default: one per CPU)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    result = run(n, cpus if hogs is None else hogs)
    if json_out is not None:
        json_out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
