"""Glue of `agent diagnose`: load the configuration, build and run the check table, render the table."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.diagnose.model import Context, Options, Result, failed
from agent.diagnose.runner import run_checks, select
from agent.diagnose.table import build_checks
from agent.errors import LewsError

log = logging.getLogger(__name__)
STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}
DIAGNOSE_FILE = "diagnose.json"  # read by the local status page (agent/web)


def save_results(ctx: Context, doc: dict[str, Any]) -> Path | None:
    """Write the run to ``<state_dir>/diagnose.json`` atomically for the status page; None if impossible.

    Only when the state directory exists (diagnose never creates the daemon's directories)."""
    state = ctx.cfg.daemon.state_dir
    if not state.is_dir():
        return None
    path = state / DIAGNOSE_FILE
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps({**doc, "time": time.time()}, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("diagnose results not saved to %s: %s", path, exc)
        return None
    return path


def diagnose_results(
    config_path: Path,
    *,
    timeout: float | None = 120.0,
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    listen_s: float | None = None,
    expect_daemon: bool = False,
    selftest: bool = False,
) -> tuple[list[Result], Context | None]:
    """Results in table order; a configuration that does not load is a single FAIL (nothing else runs).

    ``skip`` adds to the configuration's ``diagnose.skip``; ``listen_s`` None: ``diagnose.listen_s``."""
    from agent.config import diagnose_settings, load_config

    try:
        cfg = load_config(config_path)
    except LewsError as exc:
        return [failed("config", exc.message, exc.fix or "see `agent config example`")], None
    site = diagnose_settings(cfg)
    options = Options(
        listen_s=site.listen_s if listen_s is None else listen_s,
        expect_daemon=expect_daemon or site.expect_daemon,
        selftest=selftest,
    )
    ctx = Context(cfg, config_path=config_path, options=options)
    checks = select(build_checks(ctx), only, [*site.skip, *skip])
    return run_checks(checks, ctx, timeout_s=timeout), ctx


def render_table(results: Sequence[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="lews-agent diagnose", show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("measured")
    table.add_column("fix")
    for r in results:
        st = r.status.name
        table.add_row(r.name, f"[{STYLE[st]}]{st}[/]", r.value, r.fix)
    counts = {s: sum(1 for r in results if r.status.name == s) for s in STYLE}
    console = Console(width=None if Console().is_terminal else 160)
    console.print(table)
    console.print(", ".join(f"[{STYLE[k]}]{v} {k}[/]" for k, v in counts.items()))
