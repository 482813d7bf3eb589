"""`agent run` (the daemon) registers only its own command module: the other commands' imports (rich,
the replay and inspect tools, the demo's simulators, the report) stay out of the daemon process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_IN_DAEMON = (
    "rich",
    "agent.demo",
    "agent.demo.run",
    "agent.sensors.cli",
    "agent.replay_cli",
    "agent.report.cli",
    "agent.diagnose.cli",
    "agent.web.cli",
)

CODE = r"""
import json, sys
import typer
from agent import cli
cli._register_for(sys.argv[1:])
# what `agent run` imports once it runs (runtime_cli.run), simulated clock included
import agent.config, agent.daemon, agent.inference.heap
from agent.sensors.clock import SimClock
names = sorted(typer.main.get_command(cli.app).commands)
print(json.dumps({"commands": names, "loaded": [m for m in json.loads(%r) if m in sys.modules]}))
"""


def _fresh(*argv: str) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CODE % json.dumps(NOT_IN_DAEMON), *argv],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
        cwd=REPO,
    )
    result: dict[str, list[str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_agent_run_imports_none_of_the_other_commands_modules() -> None:
    got = _fresh("run", "--config", "x.toml")
    assert got["loaded"] == []
    assert "run" in got["commands"]


def test_every_other_invocation_registers_every_command() -> None:
    got = _fresh("inspect", "--help")
    assert {"run", "inspect", "replay", "diagnose", "report", "bundle"} <= set(got["commands"])
    assert "agent.sensors.cli" in got["loaded"]
    assert set(_fresh()["commands"]) == set(got["commands"])  # bare `agent` (help) lists them all


def test_agent_run_help_works_with_only_its_module_registered() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from agent.cli import main; main()", "run", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout
