"""`agent replay`: run a raw capture through the real pipeline into a store, with a summary."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config import load_config
from agent.errors import ConfigError, LewsError
from agent.features.aggregate import DAY_S
from agent.features.settings import StoreConfig
from agent.features.site_series import write_site_series
from agent.features.store import Store
from agent.features.windows import site_series
from agent.sensors.replay import ReplayResult, replay, replay_config
from agent.sensors.settings import SensorsConfig

log = logging.getLogger(__name__)


class _Sections(BaseModel):
    """The two sections replay needs from a JSON configuration; other sections are ignored."""

    model_config = ConfigDict(extra="ignore")
    sensors: SensorsConfig = Field(default_factory=SensorsConfig, description="Sensing side.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Time-series store.")


def load_sections(path: Path) -> tuple[SensorsConfig, StoreConfig]:
    """``sensors`` and ``store`` of the agent configuration: TOML through ``agent.config.load_config``
    (the same checks as the daemon), or a JSON file holding at least those two sections."""
    path = Path(path)
    if path.suffix != ".json":
        full = load_config(path)
        return full.sensors, full.store
    try:
        sections = _Sections.model_validate(json.loads(path.read_text()))
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}", fix="pass --config FILE") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}", fix="fix the syntax") from exc
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: invalid sensors/store section: {exc}", fix="see `agent config example`"
        ) from exc
    return sections.sensors, sections.store


def _parse_speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither 'max' nor a number") from None
    if not value > 0:
        raise typer.BadParameter("speed must be > 0")
    return value


def summary(result: ReplayResult, store_path: Path | None) -> dict[str, Any]:
    return {
        "records": result.records,
        "bytes": result.bytes,
        "samples": dict(sorted(result.samples.items())),
        "steps": {str(k): v for k, v in sorted(result.steps.items())},
        "drops": result.drops(),
        "capture_s": round(result.capture_s, 3),
        "wall_s": round(result.wall_s, 3),
        "speed_x_real_time": round(result.speed, 1) if result.wall_s > 0 else None,
        "mode": result.mode,
        "columnar_refused": result.columnar_refused,
        "store": str(store_path) if store_path is not None else None,
    }


def _echo_summary(doc: dict[str, Any]) -> None:
    typer.echo(f"replayed {doc['records']} reads, {doc['bytes']} bytes, {doc['capture_s']:.1f} s of capture")
    typer.echo(f"in {doc['wall_s']:.2f} s wall time: {doc['speed_x_real_time']} x real time ({doc['mode']})")
    if doc["columnar_refused"]:
        typer.echo(f"read by read: the columnar replay refused this capture ({doc['columnar_refused']})")
    typer.echo("samples per channel:")
    for ch, n in doc["samples"].items():
        typer.echo(f"  {ch:20s} {n}")
    typer.echo("steps written: " + ", ".join(f"{n} of {s} s" for s, n in doc["steps"].items()))
    if doc["drops"]:
        typer.echo("drops and errors:")
        for k, n in doc["drops"].items():
            typer.echo(f"  {k:50s} {n}")
    else:
        typer.echo("drops and errors: none")
    if doc["store"]:
        typer.echo(f"store: {doc['store']}")


def replay_command(
    capture_dir: Path = typer.Argument(..., help="Capture directory (index.json + one .cap per port)."),
    config: Path = typer.Option(..., "--config", help="Agent configuration file (TOML or JSON)."),
    speed: str = typer.Option("max", "--speed", help="'max' (as fast as possible) or N x real time."),
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Write one JSON line per sample and step."),
    store_path: Path | None = typer.Option(
        None, "--store", help="Store to write (must not exist). Default: a temporary one, deleted after."
    ),
    hourly: bool = typer.Option(True, "--hourly/--daily-only", help="Also write hourly steps."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
    site_csv: Path | None = typer.Option(
        None, "--site-series", help="Also write the daily steps as a site-series CSV (training format)."
    ),
    station: str = typer.Option("gateway", "--station", help="Station name in the site-series header."),
    synthetic: bool = typer.Option(False, "--synthetic", help="Label the site series as synthetic data."),
) -> None:
    """Feed a raw capture through the same decoders, processors and store as the live agent."""
    factor = _parse_speed(speed)
    try:
        sensors, store_cfg = load_sections(config)
        replay_config(sensors, capture_dir)  # a bad capture fails before a store file is created
        with tempfile.TemporaryDirectory(prefix="lews-replay-") as tmp:
            path = store_path if store_path is not None else Path(tmp) / "replay.sqlite"
            if path.exists():
                typer.echo(f"error: {path} exists; replay writes a new store (use another --store)", err=True)
                raise typer.Exit(2)
            store = Store(store_cfg.model_copy(update={"path": path}))
            try:
                if jsonl is not None:
                    with jsonl.open("w") as fh:
                        result = replay(capture_dir, sensors, store, speed=factor, jsonl=fh, hourly=hourly)
                else:
                    result = replay(capture_dir, sensors, store, speed=factor, hourly=hourly)
                if site_csv is not None:
                    meta = {
                        "source": f"agent replay of {capture_dir.name}",
                        "synthetic": str(synthetic).lower(),
                    }
                    table = store.read_steps(DAY_S, -math.inf, math.inf)
                    write_site_series(site_series(table, station=station, extra_meta=meta), site_csv)
            finally:
                store.close()
            doc = summary(result, store_path)
    except LewsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        _echo_summary(doc)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay_command)
