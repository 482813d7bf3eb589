"""A real demo state dir for the report / status-page / metrics tests.

``demo_state()`` runs the SYNTHETIC storm demo once per test process (simulated devices on
pseudo-terminals -> the real daemon -> mosquitto) and counts, beside it, every new status.json and
every forecast published on MQTT. The report and the page then read that real state."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import StatePaths


@dataclass(frozen=True)
class DemoState:
    root: Path
    paths: StatePaths
    forecasts: int
    statuses: int


_CACHE: dict[str, DemoState] = {}
_LOCK = threading.Lock()


def _iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def demo_state(duration: float = 25.0) -> DemoState:
    """Run the demo once per process (about ``duration`` + 8 s) and return its state paths."""
    with _LOCK:
        if "demo" in _CACHE:
            return _CACHE["demo"]
        from agent.demo.run import run_demo
        from agent.publish.broker import start_local_broker
        from agent.publish.watch import TopicWatcher

        root = Path(tempfile.mkdtemp(prefix="lews-report-demo-"))
        atexit.register(shutil.rmtree, root, True)
        state = root / "state"
        broker = start_local_broker("mosquitto")  # the daemon itself writes history.jsonl
        seen = {"statuses": 0, "forecasts": 0}

        def on_msg(msg: Any) -> None:
            if msg.topic.endswith("/forecast") and msg.payload:
                seen["forecasts"] += 1

        watcher = TopicWatcher(broker.host, broker.port, "lews/v1/+/+/forecast", on_receive=on_msg).start()
        stop = threading.Event()

        def poll_status() -> None:
            last = 0.0
            while not stop.is_set():
                path = state / "status.json"
                try:
                    mtime = path.stat().st_mtime_ns
                    if mtime != last:
                        last = mtime
                        seen["statuses"] += 1
                except (OSError, ValueError):
                    pass  # not written yet, or replaced while read: the next poll reads it
                stop.wait(0.1)

        poller = threading.Thread(target=poll_status, daemon=True)
        poller.start()
        try:
            code = run_demo(
                duration=duration,
                broker=f"{broker.host}:{broker.port}",
                json_out=False,
                speed=0.0,
                workdir=root,
            )
        finally:
            stop.set()
            poller.join(5)
            watcher.stop()
            broker.stop()
        if code != 0:
            raise RuntimeError(f"demo exited {code}")
        result = DemoState(
            root, StatePaths(state, root / "store.sqlite"), seen["forecasts"], seen["statuses"]
        )
        _CACHE["demo"] = result
        return result
