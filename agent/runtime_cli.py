"""`agent run`, `agent config validate|example` and `agent demo`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import LewsError

log = logging.getLogger(__name__)


def _fail(exc: LewsError, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    if exc.fix:
        typer.echo(f"fix: {exc.fix}", err=True)
    return typer.Exit(code)


def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Agent configuration (TOML).")],
    clock_speed: Annotated[
        float,
        typer.Option(
            hidden=True,
            help="Replays/tests only: run on a simulated clock, this many seconds per real second.",
        ),
    ] = 0.0,
    clock_start: Annotated[
        float, typer.Option(hidden=True, help="Replays/tests only: simulated time (epoch s) at the anchor.")
    ] = 0.0,
    clock_anchor: Annotated[
        float,
        typer.Option(
            hidden=True,
            help="Replays/tests only: wall-clock epoch second at which the simulated clock reads "
            "--clock-start (default: now). Give the same anchor after a restart to resume the same time.",
        ),
    ] = 0.0,
) -> None:
    """Run the gateway daemon until SIGTERM/SIGINT (systemd: Type=notify, watchdog tied to progress)."""
    import time

    from agent.config import load_config
    from agent.daemon import Daemon
    from agent.inference.heap import limit_malloc_arenas
    from agent.stop_signal import StopSignals

    limit_malloc_arenas()  # before the daemon's threads exist (bench/bench_memory.py, docs/performance.md)
    try:
        cfg = load_config(config)
        if clock_speed > 0:
            from agent.sensors.clock import SimClock  # not agent.demo: the simulators stay out

            anchor = clock_anchor if clock_anchor > 0 else time.time()
            clock = SimClock(clock_speed, clock_start if clock_start > 0 else anchor, anchor_wall=anchor)
            log.warning(
                "simulated clock: %g s per real second from %.0f (replay/test mode)", clock_speed, anchor
            )
            daemon = Daemon(cfg, clock=clock, steps_every_s=3600.0)
        else:
            daemon = Daemon(cfg)

        # before start(): READY=1 goes out inside it, and a stop right after READY must be clean
        signals = StopSignals().install()
        daemon.start()
    except LewsError as exc:
        raise _fail(exc) from exc
    signals.wait(daemon.wait)
    daemon.stop()
    if daemon.fatal:
        typer.echo(f"error: {daemon.fatal}", err=True)
        raise typer.Exit(1)


config_app = typer.Typer(name="config", help="Check or create the agent configuration.", no_args_is_help=True)


@config_app.command("validate")
def config_validate(file: Annotated[Path, typer.Argument(help="Configuration file (TOML).")]) -> None:
    """Validate FILE: syntax, unknown keys, value ranges, file permissions. Exit 0 when valid."""
    from agent.config import load_config

    try:
        cfg = load_config(file)
    except LewsError as exc:
        raise _fail(exc) from exc
    ports = ", ".join(f"{p.name}={p.path}" for p in cfg.sensors.enabled_ports()) or "none"
    typer.echo(f"{file}: valid (site {cfg.site.site}, node {cfg.site.node}, ports: {ports})")


@config_app.command("example")
def config_example() -> None:
    """Print a complete example configuration with every key described."""
    from agent.config_example import example_toml

    sys.stdout.write(example_toml())


def demo(
    duration: Annotated[float, typer.Option(help="Seconds to run before the summary.")] = 60.0,
    broker: Annotated[
        str | None, typer.Option(help="HOST:PORT of a broker to use instead of starting one.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Final summary as one JSON line.")] = False,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 0.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Put every file of the demo's daemon (state, store, outbox, bundle slots, agent.toml) "
            "under this folder and keep it (default: a new folder under /tmp, named at the end).",
        ),
    ] = None,
    workdir: Annotated[Path | None, typer.Option(help="Same as --state-dir.")] = None,
) -> None:
    """Simulated site (storm, acceleration, wire trip) -> daemon -> MQTT, with a live view and a summary."""
    from agent.demo.run import run_demo

    root = state_dir if state_dir is not None else workdir
    try:
        code = run_demo(duration=duration, broker=broker, json_out=json_out, speed=speed, workdir=root)
    except LewsError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.add_typer(config_app)
    app.command("demo")(demo)
