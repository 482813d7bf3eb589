"""HTML for the report (self-contained: PNGs embedded as data: URIs) and the pieces the status page shares.

Everything the daemon wrote is escaped; the page has no scripts and loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Mapping
from typing import Any

from agent.history import NO_DATA
from agent.report.data import ReportData
from agent.report.style import LEVEL_STYLE, SOURCE_ORDER

CAPTIONS: dict[str, str] = {
    "levels": "Alert levels over time (published level and each source)",
    "displacement": "GNSS displacement and day-ahead forecast with the warning thresholds",
    "rain": "Rain",
    "seismic": "Seismic triggers and peak ground velocity",
    "riskmap": "Latest risk map",
}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{padding:12px 20px;background:#263238;color:#fff}
header h1{margin:0;font-size:20px} header .sub{color:#b0bec5;font-size:13px}
main{padding:16px 20px;max-width:1240px}
.level{display:inline-block;white-space:nowrap;padding:14px 28px;border-radius:8px;color:#fff;
font-size:34px;font-weight:700}
.grid{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.card{flex:1 1 260px;max-width:100%;background:#fff;border-radius:8px;padding:12px 16px;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
table{border-collapse:collapse;font-size:14px}
td,th{padding:4px 10px;text-align:left;border-bottom:1px solid #eee}
.pill{display:inline-block;min-width:76px;text-align:center;padding:2px 8px;border-radius:10px;color:#fff}
.warn{color:#c62828;font-weight:600} .card.wide{flex-basis:420px}
.card.fixed{flex:0 0 auto} .muted{color:#666;font-size:13px}
figure{margin:16px 0;background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 3px rgba(0,0,0,.15)}
figure img{max-width:100%} figcaption{font-size:14px;color:#444;margin:4px}
nav a{color:#fff;margin-right:14px}
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def level_name(level: int | None) -> str:
    if level is None:
        return "unknown"
    return LEVEL_STYLE.get(int(level), (f"level {level}", ""))[0]


def level_colour(level: int | None) -> str:
    if level is None:
        return LEVEL_STYLE[NO_DATA][1]
    return LEVEL_STYLE.get(int(level), LEVEL_STYLE[NO_DATA])[1]


def level_badge(level: int | None) -> str:
    """The big coloured published level: 'LEVEL 3 · WARNING'."""
    text = "NO STATUS" if level is None else f"LEVEL {int(level)} &middot; {esc(level_name(level).upper())}"
    return f'<div class="level" id="level" style="background:{level_colour(level)}">{text}</div>'


def pill(level: int | None) -> str:
    name = level_name(level) if level is None or level >= 0 else "no data"
    return f'<span class="pill" style="background:{level_colour(level)}">{esc(name)}</span>'


def sources_table(status: Mapping[str, Any] | None) -> str:
    """Per-source level, reason and data time (order: SOURCE_ORDER, then any others)."""
    sources = status.get("sources") if status else None
    if not isinstance(sources, Mapping) or not sources:
        return '<p class="muted">No source levels yet (the daemon has not evaluated).</p>'
    names = [s for s in SOURCE_ORDER if s in sources] + sorted(set(sources) - set(SOURCE_ORDER))
    rows = []
    for name in names:
        src = sources[name] if isinstance(sources[name], Mapping) else {}
        lvl = src.get("level")
        lvl_i = int(lvl) if isinstance(lvl, int | float) and not isinstance(lvl, bool) else None
        fault = ' <span class="warn">FAULT</span>' if src.get("fault") else ""
        rows.append(
            f"<tr><td>{esc(name)}</td><td>{pill(lvl_i)}{fault}</td><td>{esc(src.get('reason', ''))}</td>"
            f"<td class=muted>{esc(src.get('data_time') or '-')}</td></tr>"
        )
    head = "<tr><th>source</th><th>level</th><th>why</th><th>data time</th></tr>"
    return f'<table id="sources">{head}{"".join(rows)}</table>'


def iso(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def published_level(status: Mapping[str, Any] | None) -> int | None:
    lvl = status.get("published_level") if status else None
    return int(lvl) if isinstance(lvl, int | float) and not isinstance(lvl, bool) else None


def figures(srcs: Mapping[str, str]) -> str:
    """<figure>s for plot name -> image URL, in CAPTIONS order."""
    parts = []
    for name, caption in CAPTIONS.items():
        if name in srcs:
            parts.append(
                f'<figure><img src="{esc(srcs[name])}" alt="{esc(caption)}" id="plot-{esc(name)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    return "".join(parts)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def report_html(data: ReportData, pngs: Mapping[str, bytes], *, generated: float | None = None) -> str:
    """The self-contained HTML report."""
    status = data.status
    level = published_level(status)
    title = f"lews-agent report: {data.site or 'site'}"
    notes = []
    if data.levels_derived:
        notes.append("No level history on this gateway yet: levels over time show the wire alarm only.")
    if data.dropped:
        notes.append(f"Skipped unreadable history lines: {sum(data.dropped.values())}.")
    if data.riskmap is None:
        notes.append("No risk map in the state directory.")
    summary = (
        f"<table><tr><td>window (data time)</td><td>{iso(data.start)} &ndash; {iso(data.end)}"
        f" ({data.days:g} days)</td></tr>"
        f"<tr><td>forecasts recorded</td><td>{len(data.history.forecasts)}</td></tr>"
        f"<tr><td>seismic trigger-ons</td><td>{data.triggers.size}</td></tr>"
        f"<tr><td>status time</td><td>{iso(status.get('time') if status else None)}</td></tr></table>"
    )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{esc(title)}</h1>"
        f'<div class="sub">generated {iso(generated if generated is not None else time.time())}</div>'
        f'</header><main><div class="grid"><div class="card">{level_badge(level)}'
        f'<p class="muted">published level at the last evaluation</p></div>'
        f'<div class="card">{summary}</div></div>'
        f'<div class="card" style="margin-top:16px"><h3>Sources</h3>{sources_table(status)}</div>'
        + "".join(f'<p class="muted">{esc(n)}</p>' for n in notes)
        + figures({k: data_uri(v) for k, v in pngs.items()})
        + "</main></body></html>"
    )
