"""`agent inspect FILE`: decode a capture and summarise it for a technician (rich table or --json).

FILE may be a receiver log (raw UBX / NMEA bytes, optionally .gz), a raw firmware-bridge byte
stream, a ``.cap`` port file or a capture directory written by the agent (agent/sensors/capture.py).
Garbage is summarised (errors counted), never a traceback. Exit 0 when FILE held receiver or bridge
messages, 1 when it could be read but nothing in it was recognised (a RINEX file, /dev/null, the wrong
file), 2 when it could not be read.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import math
import zlib
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from agent.compat import UTC
from agent.errors import CaptureError, ConfigError, LewsError
from agent.sensors.gnss import GATE_PRESETS, Reference
from agent.sensors.gnss_inspect import detect_format, quiet, summarize_gnss

if TYPE_CHECKING:
    from firmware_bridge.reader import FrameDecoder

log = logging.getLogger(__name__)
FORMATS = ("auto", "ubx", "nmea", "bridge")
GZIP_MAGIC = b"\x1f\x8b"
CAP_MAGIC = b"LEWSCAP1"
CHUNK = 1 << 16


def read_bytes(path: Path) -> tuple[bytes, dict[str, Any]]:
    """All bytes of FILE (gunzipped; a .cap file's records joined) and notes on how it was read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc}", fix="check the path and its permissions") from exc
    notes: dict[str, Any] = {"container": "raw"}
    if raw[:2] == GZIP_MAGIC:
        notes["container"] = "gzip"
        out = bytearray()
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                while chunk := gz.read(CHUNK):
                    out += chunk
        except (OSError, EOFError, zlib.error) as exc:
            notes["gzip_error"] = str(exc)  # keep what decompressed before the damage
        raw = bytes(out)
    if raw[: len(CAP_MAGIC)] == CAP_MAGIC:
        from agent.sensors.capture import ReadStats, iter_records

        stats = ReadStats()
        raw = b"".join(data for _, data in iter_records(path, stats))
        notes.update(container="cap", records=stats.records, truncated_tail=stats.truncated_tail)
    return raw, notes


def summarize_bridge(data: bytes) -> dict[str, Any]:
    """Frame counts, errors, sequence gaps and a digest of the messages of a firmware-bridge stream."""
    from firmware_bridge.reader import FrameDecoder

    return _bridge_digest(FrameDecoder(name="inspect"), data)


def _bridge_digest(dec: FrameDecoder, data: bytes) -> dict[str, Any]:
    from firmware_bridge.messages import Rain, Seismic, Wire

    seismic_samples = 0
    seismic_index_gaps = 0
    next_index: dict[int, int] = {}
    wire: Counter[str] = Counter()
    tips: dict[int, list[int]] = {}
    for i in range(0, len(data), CHUNK):
        for frame in dec.decode(data[i : i + CHUNK]):
            msg = frame.message
            if isinstance(msg, Seismic):
                n = len(msg.samples)
                first = msg.first_index
                expect = next_index.get(frame.boot_id)
                if expect is not None and first != expect:
                    seismic_index_gaps += 1
                next_index[frame.boot_id] = first + n
                seismic_samples += n
            elif isinstance(msg, Wire):
                wire[msg.state.name] += 1
            elif isinstance(msg, Rain):
                tips.setdefault(frame.boot_id, []).append(msg.tips)
    c = dec.counters
    return {
        "format": "bridge",
        "bytes": c.bytes_in,
        "messages": dict(sorted(c.by_type.items())),
        "errors": c.error_total(),
        "errors_by_kind": {k.value: v for k, v in c.errors.items() if v},
        "skipped_bytes": c.bytes_dropped,
        "frames": c.frames_ok,
        "pending_bytes": dec.pending,
        "sequence": {
            "gaps": c.seq_gaps,
            "missing_frames": c.missing_frames,
            "backwards": c.seq_backwards,
            "reboots": c.reboots,
        },
        "seismic": {"samples": seismic_samples, "index_gaps": seismic_index_gaps},
        "wire_states": dict(wire),
        "rain_tips": {f"0x{b:08x}": {"first": v[0], "last": v[-1]} for b, v in tips.items()},
    }


def summarize(data: bytes, fmt: str, **gnss_kw: Any) -> dict[str, Any]:
    chosen = detect_format(data) if fmt == "auto" else fmt
    if chosen == "bridge":
        return summarize_bridge(data)
    out = summarize_gnss(data, fmt=chosen, **gnss_kw)
    out["format"] = chosen
    return out


def inspect_path(path: Path, fmt: str, **gnss_kw: Any) -> dict[str, Any]:
    """Summary of a file, or of every port of a capture directory (totals at the top level)."""
    if path.is_dir():
        from agent.sensors.capture import iter_port, read_index

        index = read_index(path)
        ports = {}
        for name, entry in sorted(index.ports.items()):
            data = b"".join(d for _, d in iter_port(path, name))
            # a capture's "ubx"/"nmea" names the receiver port; it may carry both protocols
            declared = "gnss" if entry.format in ("ubx", "nmea") else entry.format
            ports[name] = summarize(data, declared if fmt == "auto" else fmt, **gnss_kw)
        messages: Counter[str] = Counter()
        for p in ports.values():
            messages.update(p["messages"])
        return {
            "file": str(path),
            "format": "capture",
            "bytes": sum(p["bytes"] for p in ports.values()),
            "messages": dict(sorted(messages.items())),
            "errors": sum(p["errors"] for p in ports.values()),
            "ports": ports,
        }
    data, notes = read_bytes(path)
    out = {"file": str(path), **summarize(data, fmt, **gnss_kw), "read": notes}
    return out


TIME_KEYS = ("t_first", "t_last")


def iso_utc(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt(v: Any, digits: int = 1) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    if isinstance(v, list):
        return " / ".join(_fmt(x, digits) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x, digits)}" for k, x in v.items()) or "-"
    return str(v)


def render(summary: dict[str, Any], console: Console) -> None:
    for name, port in summary.get("ports", {"": summary}).items():
        console.print(f"[bold]{summary['file']} {name}".rstrip() + f"[/bold]  format: {port['format']}")
        table = Table(show_header=True)
        table.add_column("message")
        table.add_column("count", justify="right")
        for msg, n in port["messages"].items():
            table.add_row(msg, str(n))
        console.print(table)
        facts = Table(show_header=False, box=None)
        facts.add_column("what", style="bold")
        facts.add_column("value")
        facts.add_row("bytes", str(port["bytes"]))
        facts.add_row("errors", f"{port['errors']}  {_fmt(port.get('errors_by_kind', {}))}")
        facts.add_row(
            "skipped bytes / resyncs", f"{port.get('skipped_bytes', 0)} / {port.get('resyncs', '-')}"
        )
        for key in ("epochs", "sequence", "seismic", "wire_states", "read"):
            if port.get(key):
                for k, v in port[key].items():
                    shown = iso_utc(v) if k in TIME_KEYS and isinstance(v, (int, float)) else _fmt(v)
                    facts.add_row(f"{key}.{k}", shown)
        sol = port.get("solution")
        if sol:
            facts.add_row("solution reference", _fmt(sol["reference"], 7))
            if "median_position" in sol:
                facts.add_row("median position", _fmt(sol["median_position"], 7))
            facts.add_row("gated epochs", f"{sol['count']} ({100 * sol['fraction_gated']:.0f} %)")
            facts.add_row("median e/n/u mm", _fmt(sol["median_enu_mm"]))
            facts.add_row("spread (1.4826 MAD) e/n/u mm", _fmt(sol["mad_enu_mm"]))
            facts.add_row("IQR e/n/u mm", _fmt(sol["iqr_enu_mm"]))
        elif "epochs" in port:
            facts.add_row("solution", "no gated epochs")
        console.print(facts)


def _parse_ref(ref: str | None) -> Reference | None:
    if not ref:
        return None
    try:
        lat, lon, h = (float(x) for x in ref.split(","))
    except ValueError as exc:
        raise ConfigError(f"--ref {ref!r} is not LAT,LON,H", fix="e.g. --ref 46.05,14.5,420.0") from exc
    return Reference(lat, lon, h)


def inspect_cmd(
    file: Path = typer.Argument(
        ..., help="receiver log (.ubx/.log/.gz), bridge bytes, .cap file or capture dir"
    ),
    fmt: str = typer.Option("auto", "--format", help="auto | ubx | nmea | bridge"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
    gate_preset: str = typer.Option("standalone", "--gate", help=f"GNSS gate: {', '.join(GATE_PRESETS)}"),
    ref: str | None = typer.Option(None, "--ref", help="reference LAT,LON,H (deg, deg, ellipsoidal m)"),
    step_s: float | None = typer.Option(None, "--step", help="also solve per step of this many seconds"),
) -> None:
    """Decode a capture and summarise it: message counts, fixes and quality, gated solution, errors."""
    try:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt!r} is unknown", fix=f"use one of {', '.join(FORMATS)}")
        if gate_preset not in GATE_PRESETS:
            raise ConfigError(
                f"--gate {gate_preset!r} is unknown", fix=f"use one of {', '.join(GATE_PRESETS)}"
            )
        if not file.exists():
            raise CaptureError(f"{file} does not exist", fix="pass the path of a capture or receiver log")
        with quiet("firmware_bridge", "agent.sensors.gnss_frames"):  # the summary counts the drops
            summary = inspect_path(
                file, fmt, gate_preset=gate_preset, reference=_parse_ref(ref), step_s=step_s
            )
    except LewsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    recognised = sum(int(n) for n in summary["messages"].values())
    if as_json:
        typer.echo(json.dumps(_nan_to_none(summary), default=str, allow_nan=False))
    else:
        render(summary, Console())
    if recognised == 0:
        typer.echo(
            f"error: recognised no receiver (UBX/NMEA) or bridge messages in {file} "
            f"({summary['bytes']} bytes read)\nfix: pass a raw receiver log (.ubx/.log, optionally .gz), "
            "a bridge byte stream or an agent capture; a RINEX or text file is not a receiver log",
            err=True,
        )
        raise typer.Exit(1)


def _nan_to_none(obj: Any) -> Any:
    """JSON has no NaN: unknown numbers become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_cmd)
