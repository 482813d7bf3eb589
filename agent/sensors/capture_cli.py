"""`agent capture import LOG --port NAME --out DIR`: a receiver log as a capture `agent replay` takes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from agent.compat import UTC
from agent.errors import CaptureError, LewsError

capture_app = typer.Typer(
    name="capture", help="Raw serial captures: import receiver logs for `agent replay`.", no_args_is_help=True
)


def _parse_start(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CaptureError(
            f"--start {text!r} is not an ISO 8601 time", fix="e.g. --start 2024-05-01T00:00:00Z"
        ) from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


@capture_app.command("import")
def import_cmd(
    log: Annotated[
        Path, typer.Argument(help="Receiver log: raw u-blox UBX and/or NMEA bytes, optionally .gz.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Capture directory to create (must not hold one).")],
    port: Annotated[
        str, typer.Option("--port", help="Port name (as in sensors.ports of the config).")
    ] = "gnss",
    start: Annotated[
        str | None, typer.Option("--start", help="UTC start (ISO 8601) for a log without dates.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Stamp each frame with the receiver's own epoch time and write a one-port capture."""
    from agent.sensors.capture_import import import_log
    from agent.sensors.gnss_inspect import quiet

    try:
        with quiet("agent.sensors.gnss_frames"):  # the summary counts what was left out
            result = import_log(log, out, port=port, start=_parse_start(start))
    except LewsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    doc = result.as_dict()
    if as_json:
        typer.echo(json.dumps(doc))
        return
    typer.echo(
        f"{doc['capture']}: port {doc['port']!r}, {doc['frames']} frames in {doc['records']} records, "
        f"{doc['t_first_utc']} .. {doc['t_last_utc']}"
    )
    if doc["bytes_outside_frames"]:
        typer.echo(f"left out {doc['bytes_outside_frames']} bytes outside any checksum-valid frame")
    typer.echo(f"next: agent replay {doc['capture']} --config FILE (a config with a '{port}' gnss port)")


def register(app: typer.Typer) -> None:
    app.add_typer(capture_app)
