"""`agent bundle verify BUNDLE_DIR --public-key KEY [--json]` on the gateway (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agent.errors import LewsError

bundle_app = typer.Typer(
    name="bundle", help="Model bundles: verify before use, install as an update.", no_args_is_help=True
)


@bundle_app.command("verify")
def verify(
    bundle_dir: Path = typer.Argument(..., help="Bundle directory (holds manifest.json) or its .tar."),
    public_key: Path = typer.Option(
        ..., "--public-key", help="signing.pub of the key that signed the bundle."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    threads: int = typer.Option(1, "--threads", help="onnxruntime threads for the golden check."),
) -> None:
    """Exit 0 only for an intact, correctly signed bundle whose golden vectors reproduce in onnxruntime."""
    from agent.inference.archive import opened_bundle
    from agent.inference.verify import verify_bundle

    try:
        with opened_bundle(bundle_dir) as path:
            try:
                report = verify_bundle(path, public_key, threads=threads)
            except LewsError as exc:
                if path != bundle_dir:  # name the archive, not the temporary extraction
                    exc.message = exc.message.replace(str(path), f"{bundle_dir}:{path.name}")
                raise
            report.bundle_dir = str(bundle_dir)
    except LewsError as exc:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "ok": False,
                        "bundle_dir": str(bundle_dir),
                        "error": type(exc).__name__,
                        "reason": exc.message,
                        "fix": exc.fix,
                    }
                )
            )
        else:
            typer.echo(f"REJECTED {bundle_dir}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    if as_json:
        typer.echo(json.dumps(report.as_dict(), sort_keys=True))
    else:
        typer.echo(
            f"OK {bundle_dir}: bundle {report.bundle_id} ({report.created_at}), "
            f"models {', '.join(report.models)}"
        )
        for key, ratios in sorted(report.golden.items()):
            worst = max(ratios.values())
            typer.echo(f"  golden {key}: worst error = {worst:.3f} x tolerance")


@bundle_app.command("install")
def install(
    bundle: Path = typer.Argument(..., help="Bundle directory (holds manifest.json) or its .tar."),
    config: Path = typer.Option(..., "--config", "-c", help="The running agent's configuration."),
) -> None:
    """Hand a new bundle to the running daemon as an update (A/B): it is verified here with the
    configured public key, copied into the daemon's inbox, staged into the inactive slot, switched to
    only while the site is at level 0, and rolled back if its health checks fail (see `agent status`)."""
    import shutil

    from agent.config import load_config
    from agent.inference.archive import opened_bundle
    from agent.inference.verify import verify_bundle

    try:
        cfg = load_config(config)
        inbox = cfg.daemon.state_dir / "bundles" / "inbox"
        with opened_bundle(bundle) as path:
            report = verify_bundle(path, cfg.inference.public_key, threads=cfg.inference.threads)
            inbox.mkdir(parents=True, exist_ok=True)
            tmp = inbox / f".{report.bundle_id}.incoming"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(path, tmp)
            tmp.rename(inbox / report.bundle_id)  # the daemon ignores dot-names: never sees half a copy
    except (LewsError, OSError) as exc:
        typer.echo(f"NOT INSTALLED {bundle}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"queued bundle {report.bundle_id} for the daemon in {inbox}")


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app)
