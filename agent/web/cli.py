"""`agent status-page`: serve the status page beside a daemon (or over a copied state dir)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import LewsError
from agent.report.cli import ConfigOpt, StateDirOpt, StoreOpt
from agent.stop_signal import StopSignals

log = logging.getLogger(__name__)


def status_page(
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    store: StoreOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    user: Annotated[str, typer.Option(help="Basic-auth user (needs --password-file).")] = "",
    password_file: Annotated[Path | None, typer.Option(help="File with the basic-auth password.")] = None,
    days: Annotated[float, typer.Option(help="Days of data in the plots.")] = 7.0,
) -> None:
    """Serve the local status page and /metrics until Ctrl-C / SIGTERM."""
    from pydantic import ValidationError

    from agent.config import WebSettings
    from agent.report.cli import resolve
    from agent.web.server import StatusApp, StatusServer

    signals = StopSignals().install()  # before the server thread starts
    try:
        paths, warning, site = resolve(config, state_dir, store)
        settings = WebSettings(
            host=host, port=port, basic_auth_user=user, basic_auth_password_file=password_file, plot_days=days
        )
        server = StatusServer(StatusApp(paths, settings, warning=warning, site=site)).start()
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    except LewsError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        if exc.fix:
            typer.echo(f"fix: {exc.fix}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"status page on {server.url} (state {paths.state_dir})")
    signals.wait()
    server.stop()


def register(app: typer.Typer) -> None:
    app.command("status-page")(status_page)
