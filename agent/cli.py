"""The `agent` command line: one typer app; each area registers its commands from its own module."""

from __future__ import annotations

import importlib

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


def _register_all() -> None:
    for name in _REGISTRARS:
        importlib.import_module(name).register(app)


def main() -> None:
    setup_logging()
    _register_all()
    app()


if __name__ == "__main__":
    main()
