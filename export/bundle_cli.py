"""`agent-export keygen | bundle | engine`: signing keys, signed model bundles, TensorRT engines."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from agent.errors import LewsError
from export.groups import Groups


def _fail(exc: LewsError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=2)


def keygen(
    out: Path = typer.Option(..., "--out", help="Directory for signing.key (0600) and signing.pub."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key pair (key rotation)."),
) -> None:
    """Create an Ed25519 key pair for signing bundles."""
    from export.signing import keygen as _keygen

    try:
        priv, pub = _keygen(out, overwrite=force)
    except LewsError as exc:
        _fail(exc)
        return
    typer.echo(
        f"private key: {priv} (mode 0600; keep it off gateways)\npublic key:  {pub} (copy to gateways)"
    )


def bundle(
    run_dirs: list[Path] = typer.Argument(..., help="Training run directories (displacement and/or unet)."),
    sign_key: Path = typer.Option(..., "--sign-key", help="KEY_DIR/signing.key from `agent-export keygen`."),
    out: Path = typer.Option(..., "--out", help="Bundle directory to write."),
    bundle_id: str = typer.Option(
        None, "--bundle-id", help="Id published as model version (default: derived)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    calibration_max: int = typer.Option(
        512, "--calibration-max", help="At most this many calibration samples."
    ),
    tar: bool = typer.Option(
        False, "--tar", help="Also write BUNDLE_DIR.tar (one file to copy to gateways)."
    ),
) -> None:
    """Export FP32 + Q/DQ INT8 ONNX of every model in the runs, with golden vectors, signed."""
    from export.bundle import build_bundle
    from export.run_loader import load_run

    try:
        runs = [load_run(d) for d in run_dirs]
        path = build_bundle(
            runs, sign_key, out, bundle_id=bundle_id, force=force, calibration_max=calibration_max
        )
    except LewsError as exc:
        _fail(exc)
        return
    manifest = json.loads((path / "manifest.json").read_text())
    typer.echo(f"bundle {manifest['bundle_id']} -> {path}")
    if tar:
        from agent.inference.archive import pack

        typer.echo(f"archive -> {pack(path, path.with_name(path.name + '.tar'))}")
    for m in manifest["models"]:
        for vid, cmp in m["accuracy"]["int8_vs_fp32"].items():
            typer.echo(f"  {m['name']} {vid}: {json.dumps(cmp, sort_keys=True)}")


def engine(
    bundle_dir: Path = typer.Argument(..., help="A verified bundle directory."),
    public_key: Path = typer.Option(None, "--public-key", help="Verify the bundle with this key first."),
    model: list[str] = typer.Option(None, "--model", help="Only these models (default: all)."),
    precision: str = typer.Option("int8", "--precision", help="int8 (Q/DQ, strongly typed) or fp32."),
    workspace_mib: int = typer.Option(256, "--workspace-mib", help="Builder workspace limit."),
    max_batch: int = typer.Option(8, "--max-batch", help="Optimisation profile: batch 1..max."),
    opt_batch: int = typer.Option(
        0, "--opt-batch", help="Profile opt batch (0: the batch the daemon runs for each model)."
    ),
    tolerance_scale: float = typer.Option(1.0, "--tolerance-scale", help="Multiply golden tolerances."),
) -> None:
    """Build TensorRT engines on this device from the bundle's Q/DQ ONNX; check golden vectors."""
    from export.engine import BuildOptions, build_engines

    opts = BuildOptions(
        precision=precision,
        workspace_bytes=workspace_mib << 20,
        max_batch=max_batch,
        tolerance_scale=tolerance_scale,
        opt_batch=opt_batch or None,
    )
    try:
        written = build_engines(bundle_dir, opts, models=model or None, public_key=public_key)
    except LewsError as exc:
        _fail(exc)
        return
    for path in written:
        typer.echo(f"engine: {path} (+ {path.name}.json)")


def register(groups: Groups) -> None:
    groups.app.command("keygen")(keygen)
    groups.app.command("bundle")(bundle)
    groups.app.command("engine")(engine)
