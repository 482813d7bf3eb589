"""HTML of the status page and the diagnose page (pure functions of the status / diagnose dicts)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from textwrap import shorten
from typing import Any

from agent.config import WebSettings
from agent.report.html import CSS, esc, figures, iso, level_badge, published_level, sources_table

STALE_STATUS_S = 60.0  # the daemon rewrites status.json after every evaluation (seconds apart)
DIAG_COLOURS = {"PASS": "#2e7d32", "WARN": "#f9a825", "FAIL": "#c62828"}


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, Mapping) else None
    return d


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.1f} h ago"
    return f"{s / 86400:.1f} days ago"


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def _shell(title: str, body: str, refresh_s: float | None, generated: float) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s:.0f}">' if refresh_s else ""
    nav = (
        '<nav><a href="/">status</a><a href="/diagnose">diagnose</a>'
        '<a href="/status.json">status.json</a><a href="/metrics">metrics</a></nav>'
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{refresh}<title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1>"
        f'<div class="sub">page generated {iso(generated)} &middot; {nav}</div></header>'
        f"<main>{body}</main></body></html>"
    )


def freshness_card(status: Mapping[str, Any], written: float | None, now: float) -> str:
    age = None if written is None else now - written
    stale = age is not None and age > STALE_STATUS_S
    warn = ' <span class="warn">STALE: is the daemon running?</span>' if stale else ""
    pairs = [
        ("status written", f"{esc(age_text(age))}{warn}"),
        ("data time", esc(iso(_get(status, "time")))),
    ]
    ports = _get(status, "pipeline", "ports")
    if isinstance(ports, Mapping):
        for name, p in sorted(ports.items()):
            if not isinstance(p, Mapping):
                continue
            last = p.get("last_byte_utc")
            last_age = now - float(last) if isinstance(last, int | float) else None
            state = "connected" if p.get("connected") else '<span class="warn">disconnected</span>'
            e = str(p.get("last_error") or "")
            err = f' <span class="warn" title="{esc(e)}">{esc(shorten(e, 70))}</span>' if e else ""
            pairs.append(
                (f"port {name}", f"{state}, last byte {esc(age_text(last_age))}, {p.get('bytes', 0)} B{err}")
            )
    return f'<div class="card wide" id="freshness"><h3>Freshness</h3>{_rows(pairs)}</div>'


def backend_card(status: Mapping[str, Any]) -> str:
    inf = _get(status, "inference")
    if not isinstance(inf, Mapping):
        return '<div class="card"><h3>Inference</h3><p class="muted">unknown</p></div>'
    mode = str(inf.get("mode") or "-")
    warn = ' <span class="warn">(no models: rules only)</span>' if mode == "rules_only" else ""
    pairs = [
        ("backend", f'<b id="backend">{esc(mode)}</b>{warn}'),
        ("precision", esc(inf.get("precision") or "-")),
        ("bundle", esc(inf.get("bundle_id") or "-")),
    ]
    reasons = inf.get("fallback_reasons")
    if reasons:
        pairs.append(("fallback", f'<span class="warn">{esc("; ".join(map(str, reasons)))}</span>'))
    if inf.get("last_error"):
        pairs.append(("last error", f'<span class="warn">{esc(inf.get("last_error"))}</span>'))
    return f'<div class="card" id="backend-card"><h3>Inference</h3>{_rows(pairs)}</div>'


def queue_card(status: Mapping[str, Any]) -> str:
    ob = _get(status, "publish", "outbox") or {}
    link = _get(status, "publish", "link") or {}
    depth = ob.get("depth")
    connected = link.get("connected")
    pairs = [
        ("broker", "connected" if connected else '<span class="warn">disconnected</span>'),
        ("outbox depth", f'<b id="queue-depth">{esc(depth if depth is not None else "-")}</b>'),
        (
            "oldest queued",
            esc(age_text(ob.get("oldest_age_s")) if ob.get("oldest_age_s") is not None else "-"),
        ),
        ("sent / acked", f"{esc(ob.get('sent', '-'))} / {esc(ob.get('acked', '-'))}"),
    ]
    dropped = ob.get("dropped")
    if isinstance(dropped, Mapping) and dropped:
        text = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items()))
        pairs.append(("dropped", f'<span class="warn">{esc(text)}</span>'))
    return f'<div class="card" id="queue"><h3>Publishing</h3>{_rows(pairs)}</div>'


def status_page(
    status: Mapping[str, Any] | None,
    written: float | None,
    error: str,
    plot_names: Sequence[str],
    plot_error: str,
    settings: WebSettings,
    now: float | None = None,
    *,
    level_since: float | None = None,
) -> str:
    """The ``/`` page; ``level_since``: data time the published level was reached (from the history)."""
    now = time.time() if now is None else now
    if status is None:
        msg = esc(error or "No status.json yet: the daemon has not finished its first evaluation.")
        body = f'<div class="card">{level_badge(None)}<p class="warn">{msg}</p></div>'
        return _shell("lews-agent status", body, settings.refresh_s, now)
    site = f"{status.get('site', '?')}/{status.get('node', '?')}"
    title = f"lews-agent {site}"
    fatal = status.get("fatal")
    banner = f'<div class="card warn">Daemon stopped: {esc(fatal)}</div>' if fatal else ""
    level = published_level(status)
    since = f' since <span id="since">{esc(iso(level_since))}</span>' if level_since is not None else ""
    body = (
        f'{banner}<div class="grid"><div class="card fixed">{level_badge(level)}'
        f'<p class="muted">published level{since} &middot; agent {esc(status.get("version", "?"))}</p></div>'
        f"{freshness_card(status, written, now)}{backend_card(status)}{queue_card(status)}</div>"
        f'<div class="card" style="margin-top:16px"><h3>Sources</h3>{sources_table(status)}</div>'
    )
    if plot_names:
        body += f"<h2>Last {settings.plot_days:g} days</h2>"
        body += figures({n: f"/plots/{n}.png" for n in plot_names})
    else:
        body += f'<p class="muted">Plots unavailable: {esc(plot_error or "no data yet")}</p>'
    return _shell(title, body, settings.refresh_s, now)


def diagnose_page(diag: Mapping[str, Any] | None, written: float | None, error: str, now: float) -> str:
    """The ``/diagnose`` page: the checks of the latest `agent diagnose --json` run."""
    if diag is None:
        msg = error or "No diagnose.json in the state directory: run `agent diagnose` on the gateway."
        return _shell("lews-agent diagnose", f'<div class="card"><p>{esc(msg)}</p></div>', None, now)
    checks = diag.get("checks")
    rows = []
    for c in checks if isinstance(checks, list) else []:
        if not isinstance(c, Mapping):
            continue
        st = str(c.get("status", "?"))
        colour = DIAG_COLOURS.get(st, "#9e9e9e")
        rows.append(
            f'<tr><td>{esc(c.get("name", "?"))}</td><td><span class="pill" style="background:{colour}">'
            f"{esc(st)}</span></td><td>{esc(c.get('value', ''))}</td><td>{esc(c.get('fix', ''))}</td></tr>"
        )
    counts = {
        s: sum(1 for c in checks or [] if isinstance(c, Mapping) and c.get("status") == s)
        for s in DIAG_COLOURS
    }
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    when = age_text(None if written is None else now - written)
    body = (
        f'<div class="card"><p>Last diagnosis written {esc(when)}: {esc(summary)}</p>'
        f'<table id="checks"><tr><th>check</th><th>result</th><th>measured</th><th>fix</th></tr>'
        f"{''.join(rows)}</table></div>"
    )
    return _shell("lews-agent diagnose", body, None, now)
