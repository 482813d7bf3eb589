"""`agent selftest [--config FILE | --bundle DIR --public-key KEY] [--backend B] [--json]` (no torch)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import LewsError

log = logging.getLogger(__name__)
DEFAULT_CONFIG = Path("/etc/lews-agent/agent.toml")


def selftest(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Test the bundle this agent has installed.")
    ] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Test this bundle directory.")] = None,
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="With --bundle: the key it must be signed with.")
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="onnxruntime or tensorrt (default: the config's).")
    ] = None,
    precision: Annotated[str | None, typer.Option("--precision", help="int8 or fp32.")] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", min=1, help="Timed batch (default: the daemon's per model).")
    ] = None,
    no_build: Annotated[
        bool, typer.Option("--no-build", help="tensorrt: fail instead of building a missing engine.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Verify the bundle, load the engine, run the golden vectors and a timed batch; exit 0 pass, 1 fail."""
    from agent.inference.selftest import installed_bundle, run_selftest

    threads, scale = 1, 1.0
    key: Path | None
    try:
        if bundle is not None:
            if public_key is None:
                raise typer.BadParameter("--bundle needs --public-key (the bundle is verified first)")
            path, key = bundle, public_key
            backend, precision = backend or "onnxruntime", precision or "int8"
        else:
            from agent.config import load_config

            cfg = load_config(config or DEFAULT_CONFIG)
            inf = cfg.inference
            path, key = installed_bundle(inf, cfg.daemon.state_dir), inf.public_key
            backend, precision = backend or inf.backend, precision or inf.precision
            threads, scale = inf.threads, inf.golden_tolerance
    except LewsError as exc:
        typer.echo(f"selftest not run: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if backend not in ("onnxruntime", "tensorrt") or precision not in ("int8", "fp32"):
        raise typer.BadParameter("--backend onnxruntime|tensorrt, --precision int8|fp32")
    report = run_selftest(
        path, key, backend=backend, precision=precision, threads=threads, build=not no_build,
        golden_scale=scale, batch=batch,
    )  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.as_dict(), sort_keys=True))
    else:
        typer.echo(
            f"{'PASS' if report.ok else 'FAIL'} selftest {path} (bundle {report.bundle_id or '?'}) on "
            f"{backend} {precision}; {', '.join(f'{k} {v}' for k, v in sorted(report.runtime.items()))}"
        )
        for st in report.stages:
            line = f"  {'ok  ' if st.ok else 'FAIL'} {st.name} ({st.seconds:.2f} s)"
            typer.echo(
                line + (f": {st.detail}" + (f" (fix: {st.fix})" if st.fix else "") if not st.ok else "")
            )
        for name, m in sorted(report.models.items()):
            typer.echo(
                f"  {name} [{m.variant}]: golden worst {max(m.golden_error_over_tolerance.values()):.3f} x "
                f"tolerance, max |error| vs FP32 {m.max_abs_error_vs_fp32}; batch {m.batch}: p50 "
                f"{m.latency_ms_p50:.2f} ms, p95 {m.latency_ms_p95:.2f} ms, {m.throughput_per_s:.1f}/s "
                f"({m.timed_runs} runs)"
            )
    raise typer.Exit(code=0 if report.ok else 1)


def register(app: typer.Typer) -> None:
    app.command("selftest")(selftest)
