"""The `agent` command line: one typer app; each area registers its commands from its own module."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

from agent.logsetup import setup_logging

app = typer.Typer(
    name="agent",
    help="lews-agent on the gateway: run the daemon, inspect captures, verify bundles, diagnose.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: flags without a `<bool>` value placeholder, one option a line
    rich_markup_mode=None,
)

# Each module defines `register(app: typer.Typer) -> None`.
_REGISTRARS = (
    "agent.sensors.cli",  # inspect
    "agent.sensors.capture_cli",  # capture import
    "agent.replay_cli",  # replay
    "agent.bundle_cli",  # bundle verify|install
    "agent.selftest_cli",  # selftest
    "agent.runtime_cli",  # run, config validate|example, demo
    "agent.report.cli",  # report
    "agent.web.cli",  # status-page
    "agent.diagnose.cli",  # diagnose, status
)


# `agent run` is the daemon: it registers only the module that defines it, so the daemon process does
# not import what the other commands need (rich, the replay and inspect tools, the demo, the report:
# ~7 MiB RSS, docs/performance.md section 1). Every other invocation (help included) registers all.
_DAEMON_COMMAND, _DAEMON_REGISTRAR = "run", "agent.runtime_cli"


def _register_all() -> None:
    for name in _REGISTRARS:
        importlib.import_module(name).register(app)


def _register_for(argv: Sequence[str]) -> None:
    """Register the commands ``argv`` (without the program name) needs: only `run`'s module for the
    daemon, every module otherwise."""
    if argv and argv[0] == _DAEMON_COMMAND:
        importlib.import_module(_DAEMON_REGISTRAR).register(app)
    else:
        _register_all()


def main() -> None:
    setup_logging()
    _register_for(sys.argv[1:])
    app()


if __name__ == "__main__":
    main()
