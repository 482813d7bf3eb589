"""What `agent demo` shows a person: a line per notable message, a periodic state line, a summary table."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table

from agent.demo.scenario import DAY, START_UTC, DemoScenario
from agent.publish.watch import Received

if TYPE_CHECKING:
    from agent.daemon import Daemon

LEVEL_NAMES = {0: "normal", 1: "advisory", 2: "watch", 3: "WARNING (evacuate)"}
LEVEL_STYLES = {0: "green", 1: "yellow", 2: "dark_orange", 3: "bold red"}


def _day(t: float) -> float:
    return (t - START_UTC) / DAY


def _iso_day(text: str | None) -> str:
    if not text:
        return "?"
    t = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return f"day {_day(t):5.2f}"


class LiveView:
    def __init__(self, out: TextIO, scenario: DemoScenario) -> None:
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.scenario = scenario
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last_tick = 0.0
        self._last_forecast_print = -1.0

    def header(self, speed: float, broker: str, workdir: Path) -> None:
        self.console.print(f"[bold]lews-agent demo[/] - {self.scenario.describe()}")
        pace = (
            f"time x{speed:,.0f} (1 scenario day = {DAY / speed:.2f} s)"
            if speed > 0
            else "time: as fast as it goes"
        )
        self.console.print(
            f"{pace}, in lockstep with the daemon (a loaded machine is slower, not different); "
            f"broker: {broker}"
        )
        self.console.print(f"state, store and outbox in {workdir}; all data is SYNTHETIC")
        self.console.print(
            "models: the demo bundle, trusted with the DEMO signing key (bundles/demo-keys/signing.pub): "
            "its private half is in the repository, never use it on a site\n"
        )

    def page(self, url: str | None) -> None:
        if url:
            self.console.print(f"status page: [bold]{url}[/] (open it while the demo runs)\n")

    def afterwards(self, workdir: Path, config: Path) -> None:
        self.console.print(f"\nThe demo's state is kept in {workdir}. Look at it with:")
        for cmd in (
            f"agent status --config {config}",
            f"agent report --config {config} --days 60 --out {workdir / 'report'}",
            f"agent status-page --config {config}   # the page, served again from that state",
        ):
            self.console.print(f"  {cmd}")

    def on_message(self, msg: Received) -> None:
        kind = msg.topic.split("/", 4)[-1]
        with self._lock:
            self.counts[kind] += 1
        try:
            body = msg.json() if kind != "cap" else {}
        except ValueError:
            return
        if kind == "alert/event":
            level = int(body.get("level", 0))
            ev = body.get("event", {})
            expl = ev.get("explanation", {}) if isinstance(ev, dict) else {}
            self.console.print(
                f"[{LEVEL_STYLES.get(level, 'white')}]{_iso_day(ev.get('time'))}  "
                f"ALERT {body.get('event_type')} -> level {level} {LEVEL_NAMES.get(level, '')}[/]: "
                f"{expl.get('summary', '')}"
            )
        elif kind == "wire":
            self.console.print(
                f"[bold magenta]{_iso_day(body.get('changed_at'))}  WIRE {body.get('state_name')}[/]"
                f" (published level {body.get('level')})"
            )
        elif kind == "forecast":
            day = _day(datetime.fromisoformat(str(body.get("valid_from")).replace("Z", "+00:00")).timestamp())
            if day - self._last_forecast_print >= 5 or day > 43:
                self._last_forecast_print = day
                pred = body.get("predicted_mm", {})
                self.console.print(
                    f"[cyan]day {day:5.2f}  forecast[/] next-day displacement "
                    f"{pred.get('value', float('nan')):.2f} mm "
                    f"[{pred.get('lo', float('nan')):.2f}, {pred.get('hi', float('nan')):.2f}] "
                    f"({body.get('backend')}, model {str(body.get('model_version'))[:12]})"
                )

    def tick(self, now: float, daemon: Daemon) -> None:
        if time.monotonic() - self._last_tick < 3.0:
            return
        self._last_tick = time.monotonic()
        st = daemon.status()
        levels = " ".join(
            f"{name}={'-' if src.get('level', -1) < 0 else src['level']}"
            for name, src in st.get("sources", {}).items()
        )
        with self._lock:
            total = sum(self.counts.values())
        self.console.print(
            f"[dim]day {_day(now):5.2f}  level {st.get('published_level')}  sources: {levels}  "
            f"messages received: {total}[/]"
        )

    def final(self, summary: dict[str, Any]) -> None:
        table = Table(title="lews-agent demo summary (SYNTHETIC data)")
        table.add_column("what")
        table.add_column("value")
        for key in (
            "scenario",
            "broker",
            "inference",
            "forecasts",
            "messages_published",
            "levels",
            "max_level",
            "wire_messages",
            "outbox_depth_at_stop",
        ):
            table.add_row(key, str(summary.get(key)))
        table.add_row(
            "messages by topic", ", ".join(f"{k}: {v}" for k, v in summary["messages_by_topic"].items())
        )
        self.console.print(table)
