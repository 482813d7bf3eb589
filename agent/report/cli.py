"""`agent report --days N --out DIR [--config FILE]`: PNG plots and a self-contained HTML report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent.errors import LewsError, ReportError

if TYPE_CHECKING:  # imported lazily at run time to keep `agent --help` fast
    from agent.config import StatePaths
    from agent.warning.settings import WarningSettings

log = logging.getLogger(__name__)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Agent configuration (TOML): state dir and store.")
]
StateDirOpt = Annotated[
    Path | None, typer.Option(help="State directory (status.json, history.jsonl); overrides the config.")
]
StoreOpt = Annotated[Path | None, typer.Option(help="SQLite store file; overrides the config.")]


def resolve(
    config: Path | None, state_dir: Path | None, store: Path | None
) -> tuple[StatePaths, WarningSettings, str]:
    """Paths, warning thresholds and site name from --config (or the defaults) and the overrides."""
    from agent.config import AgentConfig, StatePaths, load_config

    cfg = load_config(config) if config is not None else AgentConfig()
    paths = StatePaths.from_config(cfg)
    paths = StatePaths(
        state_dir=state_dir if state_dir is not None else paths.state_dir,
        store=store if store is not None else paths.store,
    )
    return paths, cfg.warning, cfg.site.site if config is not None else ""


def write_report(
    paths: StatePaths, days: float, out: Path, *, warning: WarningSettings | None = None, site: str = ""
) -> dict[str, Path]:
    """Write ``<name>.png`` per plot and ``report.html`` into ``out``; returns name -> path."""
    from agent.report.data import load_report_data
    from agent.report.html import report_html
    from agent.report.plots import render_all

    data = load_report_data(paths, days, warning=warning, site=site)
    pngs = render_all(data)
    try:
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, png in pngs.items():
            p = out / f"{name}.png"
            p.write_bytes(png)
            written[name] = p
        page = out / "report.html"
        page.write_text(report_html(data, pngs, generated=time.time()), encoding="utf-8")
        written["html"] = page
    except OSError as exc:
        raise ReportError(f"report folder {out} not writable: {exc}", fix="choose another --out") from exc
    log.info("report of %g days written to %s (%d plots)", days, out, len(pngs))
    return written


def report(
    days: Annotated[float, typer.Option(help="Days of data to show, ending at the newest sample.")] = 7.0,
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and report.html.")] = Path("report"),
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
) -> None:
    """PNG and HTML plots of the last N days: displacement + forecast, rain, seismic, levels, risk map."""
    try:
        paths, warning, site = resolve(config, state_dir, store)
        written = write_report(paths, days, out, warning=warning, site=site)
    except LewsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        if exc.fix:
            typer.echo(f"fix: {exc.fix}", err=True)
        raise typer.Exit(2) from exc
    for name, path in written.items():
        typer.echo(f"{name:13s} {path}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
