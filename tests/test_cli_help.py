"""Every `agent` command's --help reads cleanly: no `<bool>` value placeholder on flags, no traceback."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from agent import cli


def _commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not hasattr(group, "commands"):  # a command, not a group
        return [path]
    out: list[tuple[str, ...]] = [path] if path else []
    for name, sub in sorted(group.commands.items()):
        out += _commands(sub, (*path, name))
    return out


def test_help_of_every_command_has_no_placeholder_noise() -> None:
    cli._register_all()
    root = typer.main.get_command(cli.app)
    paths = _commands(root)
    assert {("diagnose",), ("inspect",), ("bundle", "verify"), ("run",)} <= set(paths)
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli.app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, (path, result.output)
        assert "Options:" in result.output or "Commands:" in result.output, (path, result.output)
