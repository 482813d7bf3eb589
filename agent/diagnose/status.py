"""`agent status`: the running daemon's view, from its status.json (never from the ports or the engine).

Shows the published level, each source's level and the age of its data, the inference backend, the
outbox queue and the link, and the last messages the broker holds for this node (retained ``status``,
``alert``, ``wire``, ``forecast``; read with a short time limit, skipped when the broker is unreachable).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from agent.config import AgentConfig
from agent.diagnose.model import fmt_age, fresh_limit_s, read_status_file, status_path
from agent.errors import LewsError

log = logging.getLogger(__name__)
RETAINED_KINDS = ("status", "alert", "wire", "forecast")
LEVEL_STYLE = {0: "green", 1: "yellow", 2: "dark_orange", 3: "bold red"}


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def sources_view(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per source: level, reason and the age of its data at the daemon's time (pure)."""
    now = float(status.get("time") or 0.0)
    out: dict[str, dict[str, Any]] = {}
    for name, src in sorted(status.get("sources", {}).items()):
        t = _epoch(src.get("data_time"))
        out[name] = {
            "level": src.get("level"),
            "level_name": src.get("level_name"),
            "reason": src.get("reason", ""),
            "data_time": src.get("data_time"),
            "data_age_s": None if t is None else round(max(0.0, now - t), 1),
            "fault": bool(src.get("fault")),
        }
    return out


def retained_messages(cfg: AgentConfig, timeout_s: float = 1.5) -> dict[str, Any]:
    """The retained messages of this node on the broker, by kind; {"error": ...} when unreachable."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.publish.topics import base_topic
    from agent.publish.transport import configure_tls, load_password

    s = cfg.mqtt
    base = base_topic(cfg.site.site, cfg.site.node)
    got: dict[str, Any] = {}
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lews-status-{uuid.uuid4().hex[:10]}")

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic[len(base) + 1 :]
        if msg.retain and kind in RETAINED_KINDS:
            try:
                got[kind] = json.loads(msg.payload)
            except ValueError:
                got[kind] = {"raw": msg.payload[:200].decode("utf-8", "replace")}

    client.on_message = on_message
    client.on_subscribe = lambda *_a: ready.set()
    client.on_connect = lambda c, *_a: c.subscribe([(f"{base}/{k}", 1) for k in RETAINED_KINDS])
    try:
        if s.username is not None:
            client.username_pw_set(s.username, load_password(s))
        if s.tls.enabled:
            configure_tls(client, s)
        client.connect(s.host, s.effective_port, keepalive=10)
    except (OSError, LewsError, ValueError) as exc:
        return {"error": f"broker {s.host}:{s.effective_port} unreachable: {exc}"}
    client.loop_start()
    try:
        if not ready.wait(timeout_s):
            return {"error": f"broker {s.host}:{s.effective_port} did not answer within {timeout_s:g} s"}
        time.sleep(0.3)  # retained messages follow the SUBACK at once
        return dict(got)
    finally:
        client.disconnect()
        client.loop_stop()


def summarise(cfg: AgentConfig, *, broker: bool = True, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    data, mtime = read_status_file(cfg)
    path = status_path(cfg)
    from agent.warning.rain_notice import rain_calibration

    rain = rain_calibration(cfg.warning, cfg.site.site)
    if data is None or mtime is None:
        return {
            "running": False,
            "status_file": str(path),
            "message": f"daemon not running: no readable {path}",
            "rain_thresholds": rain,
        }
    age = max(0.0, now - mtime)
    stopped = bool(data.get("stopped"))
    running = age <= fresh_limit_s(cfg) and not data.get("fatal") and not stopped
    publish = data.get("publish", {})
    outbox = publish.get("outbox", {})
    link = publish.get("link", {})
    inf = data.get("inference", {})
    ports = data.get("pipeline", {}).get("ports", {})
    out: dict[str, Any] = {
        "running": running,
        "status_file": str(path),
        "status_age_s": round(age, 1),
        "message": (
            f"daemon running (status {fmt_age(age)} old)"
            if running
            else f"daemon stopped {fmt_age(age)} ago (its last status follows)"
            if stopped
            else f"STALE: status.json is {fmt_age(age)} old: daemon not running or hung"
            + (f" (fatal: {data['fatal']})" if data.get("fatal") else "")
        ),
        "site": data.get("site"),
        "node": data.get("node"),
        "version": data.get("version"),
        "published_level": data.get("published_level"),
        "sources": sources_view(data),
        "backend": {
            "mode": inf.get("mode"),
            "precision": inf.get("precision"),
            "bundle_id": inf.get("bundle_id"),
            "fallback_reasons": inf.get("fallback_reasons", []),
        },
        "queue": {
            "depth": outbox.get("depth"),
            "oldest_age_s": outbox.get("oldest_age_s"),
            "dropped": outbox.get("dropped", {}),
            "connected": link.get("connected"),
        },
        "ports": {
            n: {
                "connected": p.get("connected"),
                "bytes": p.get("bytes"),
                "last_byte_age_s": None
                if p.get("last_byte_utc") is None
                else round(max(0.0, now - float(p["last_byte_utc"])), 1),
            }
            for n, p in ports.items()
        },
    }
    out["rain_thresholds"] = rain
    if broker:
        out["last_messages"] = retained_messages(cfg)
    return out


def render_status(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    style = "green" if summary["running"] else "bold red"
    console.print(f"[{style}]{summary['message']}[/]")
    rain = summary.get("rain_thresholds")
    if rain:
        console.print(f"[{'green' if rain['calibrated'] else 'yellow'}]{rain['message']}[/]")
    if "sources" not in summary:
        return
    level = summary.get("published_level")
    console.print(
        f"site {summary['site']}/{summary['node']}  published level "
        f"[{LEVEL_STYLE.get(level if isinstance(level, int) else 0, 'white')}]{level}[/]"
    )
    table = Table(title="sources")
    for col in ("source", "level", "data age", "reason"):
        table.add_column(col)
    for name, src in summary["sources"].items():
        lvl = src["level"]
        table.add_row(
            name,
            f"[{LEVEL_STYLE.get(lvl if isinstance(lvl, int) else 0, 'white')}]{lvl} {src['level_name']}[/]",
            fmt_age(src["data_age_s"]),
            src["reason"],
        )
    console.print(table)
    b, q = summary["backend"], summary["queue"]
    console.print(f"backend {b['mode']} {b['precision'] or ''} bundle {b['bundle_id']}")
    console.print(
        f"outbox {q['depth']} queued, oldest {fmt_age(q['oldest_age_s'])}, broker "
        f"{'connected' if q['connected'] else 'DISCONNECTED'}"
    )
    for name, p in summary["ports"].items():
        console.print(
            f"port {name}: {'connected' if p['connected'] else 'DISCONNECTED'}, "
            f"last byte {fmt_age(p['last_byte_age_s'])} ago"
        )
    for kind, msg in summary.get("last_messages", {}).items():
        console.print(f"last {kind}: {json.dumps(msg)[:160] if kind != 'error' else msg}")
