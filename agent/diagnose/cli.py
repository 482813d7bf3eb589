"""`agent diagnose` and `agent status` (registered into the `agent` app by agent/cli.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from agent.diagnose.model import Context, Result
from agent.errors import LewsError, UnknownCheckError

log = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("/etc/lews-agent/agent.toml")
STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}


def _split(values: list[str] | None) -> list[str]:
    return [v for item in values or [] for v in item.split(",") if v.strip()]


def diagnose(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Agent configuration (TOML).")
    ] = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Overall time limit (s).")] = 120.0,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="NAMES", help="Run only these checks (names/prefixes)."),
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", metavar="NAMES", help="Skip these checks (names/prefixes).")
    ] = None,
    listen: Annotated[
        float | None,
        typer.Option(
            "--listen", help="Seconds to read each port (daemon stopped); default diagnose.listen_s."
        ),
    ] = None,
    expect_daemon: Annotated[
        bool, typer.Option("--expect-daemon", help="A daemon that is not running is a FAIL.")
    ] = False,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Also write a support archive (tar.gz) here.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print the checks' log lines after the table.")
    ] = False,
    selftest: Annotated[
        bool,
        typer.Option(
            "--selftest", help="Also run `agent selftest` on the installed bundle (check inference.selftest)."
        ),
    ] = False,
) -> None:
    """Check the gateway end to end; exit 0 all PASS, 1 worst WARN, 2 any FAIL (or unknown check name)."""
    from agent.diagnose.run import diagnose_results
    from agent.logsetup import held_logs

    if verbose:  # at least INFO, whatever LEWS_LOG_LEVEL says
        root = logging.getLogger()
        root.setLevel(min(root.level or logging.INFO, logging.INFO))
    try:
        with held_logs(replay=verbose):
            results, ctx = diagnose_results(
                config,
                timeout=timeout,
                only=_split(only),
                skip=_split(skip),
                listen_s=listen,
                expect_daemon=expect_daemon,
                selftest=selftest,
            )
            _report(results, ctx, config, bundle=bundle, as_json=as_json, only=only, skip=skip)
    except UnknownCheckError as exc:
        typer.echo(f"error: {exc.message}\n{exc.fix}", err=True)
        raise typer.Exit(code=2) from None
    worst = max((r.status for r in results), default=0)
    raise typer.Exit(code=int(worst))


def _report(
    results: list[Result],
    ctx: Context | None,
    config: Path,
    *,
    bundle: Path | None,
    as_json: bool,
    only: list[str] | None,
    skip: list[str] | None,
) -> None:
    from agent.diagnose.run import render_table, save_results

    doc: dict[str, object] = {"checks": [r.as_dict() for r in results]}
    if ctx is not None:
        save_results(ctx, {**doc, "only": _split(only), "skip": _split(skip)})
    if bundle is not None:
        from agent.diagnose.archive import write_archive

        try:
            out = write_archive(bundle, config_path=config, ctx=ctx, diagnose=doc)
        except LewsError as exc:
            typer.echo(f"support archive not written: {exc}", err=True)
            raise typer.Exit(code=2) from None
        doc["bundle"] = str(out)
    if as_json:
        typer.echo(json.dumps(doc, default=str))
    else:
        render_table(results)
        if bundle is not None:
            typer.echo(f"support archive: {doc['bundle']}")


def status(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Agent configuration (TOML).")
    ] = DEFAULT_CONFIG,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """What the running daemon sees now: levels per source, freshness, last messages, backend, queue.

    Exit 0 when the daemon's status is fresh, 1 when it is stale or missing (daemon not running)."""
    from agent.config import load_config
    from agent.diagnose.status import render_status, summarise

    try:
        cfg = load_config(config)
    except LewsError as exc:
        typer.echo(f"{exc}", err=True)
        raise typer.Exit(code=2) from None
    summary = summarise(cfg)
    if as_json:
        typer.echo(json.dumps(summary, default=str))
    else:
        render_status(summary)
    raise typer.Exit(code=0 if summary["running"] else 1)


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose)
    app.command("status")(status)
