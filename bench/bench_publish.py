"""Benchmark of the publishing path: outbox enqueue rate (synchronous FULL vs NORMAL, single and batched
commits) and publish-to-receive latency through a local mosquitto on loopback.

    .venv/bin/python bench/bench_publish.py [--n 500] [--latency-n 300] [--dir DIR] [--json OUT.json]

The last line of stdout is one JSON object with every figure (for the benchmark report).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from agent.publish.broker import start_local_broker
from agent.publish.outbox import OutboundMessage, Outbox
from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.publish.watch import TopicWatcher

app = typer.Typer(add_completion=False)
PAYLOAD = json.dumps({"values": {"rain.mm": 0.2}, "pad": "x" * 300}).encode()  # ~ a telemetry payload


def _msg(i: int) -> OutboundMessage:
    return OutboundMessage(
        topic="lews/v1/bench/gw/telemetry/rain",
        payload=PAYLOAD,
        qos=1,
        retain=False,
        priority=2,
        droppable=True,
        msg_id=f"bench{i:010d}",
    )


def enqueue_rate(directory: Path, mode: str, n: int, batch: int) -> float:
    path = directory / f"outbox-{mode}-{batch}.sqlite"
    with Outbox(path, synchronous=mode, max_messages=10 * n) as ob:  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            ob.enqueue_many([_msg(i) for i in range(start, min(n, start + batch))])
        dt = time.perf_counter() - t0
    for p in directory.glob(f"outbox-{mode}-{batch}.sqlite*"):
        p.unlink()
    return n / dt


def latency(directory: Path, mode: str, n: int, interval_s: float) -> dict[str, Any]:
    broker = start_local_broker("auto")
    try:
        settings = MqttSettings.model_validate(
            {
                "port": broker.port,
                "outbox": {"path": str(directory / f"lat-{mode}.sqlite"), "synchronous": mode},
            }
        )
        pub = Publisher(settings, site="bench", node="gw", agent_version="bench")
        with TopicWatcher(broker.host, broker.port, "lews/v1/bench/gw/telemetry/#") as watch:
            pub.start()
            pub.link.connected.wait(10)
            sent: dict[float, float] = {}
            for i in range(n):
                t_send = time.time()
                sent[float(i)] = t_send
                pub.publish_telemetry(
                    "rain", {"seq": float(i)}, window_start=t_send, window_end=t_send, completeness=1.0
                )
                time.sleep(interval_s)
            msgs = watch.wait_for(lambda m: len(m) >= n, 30)
            pub.stop()
        lat = sorted((m.t - sent[m.json()["values"]["seq"]]) * 1000.0 for m in msgs)
    finally:
        broker.stop()
    q = statistics.quantiles(lat, n=100)
    return {
        "received": len(lat),
        "p50_ms": round(statistics.median(lat), 3),
        "p99_ms": round(q[98], 3),
        "max_ms": round(lat[-1], 3),
        "broker": broker.kind,
    }


@app.command()
def main(
    n: int = typer.Option(500, help="messages per enqueue-rate measurement"),
    latency_n: int = typer.Option(300, help="messages for the latency measurement"),
    interval_ms: float = typer.Option(10.0, help="gap between latency messages"),
    directory: Path | None = typer.Option(None, "--dir", help="where the SQLite files go (a real disk)"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the result here"),
) -> None:
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        d = Path(tmp)
        result: dict[str, Any] = {
            "benchmark": "publish",
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "dir": str(directory or tempfile.gettempdir()),
            "enqueue_per_s": {},
            "latency": {},
        }
        for mode in ("FULL", "NORMAL"):
            for batch in (1, 100):
                rate = enqueue_rate(d, mode, n, batch)
                result["enqueue_per_s"][f"{mode}_batch{batch}"] = round(rate, 1)
                typer.echo(f"outbox enqueue  synchronous={mode:<6} batch={batch:<3}  {rate:10.1f} msg/s")
        full, normal = result["enqueue_per_s"]["FULL_batch1"], result["enqueue_per_s"]["NORMAL_batch1"]
        result["full_vs_normal_single"] = round(full / normal, 3)
        for mode in ("FULL", "NORMAL"):
            lat = latency(d, mode, latency_n, interval_ms / 1000.0)
            result["latency"][mode] = lat
            typer.echo(
                f"publish->receive synchronous={mode:<6} via {lat['broker']}: p50 {lat['p50_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms ({lat['received']} msgs)"
            )
    line = json.dumps(result)
    if json_out is not None:
        json_out.write_text(line + "\n")
    typer.echo(line)


if __name__ == "__main__":
    app()
