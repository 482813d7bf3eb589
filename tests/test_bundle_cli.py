"""`agent-export keygen | bundle | engine` command lines and the `[inference]` settings section."""

from __future__ import annotations

import stat
from pathlib import Path

import pydantic
import pytest
import typer
from typer.testing import CliRunner

from agent.inference.settings import InferenceSettings
from export import bundle_cli
from export.groups import Groups


def _app() -> typer.Typer:
    app = typer.Typer()
    sub = typer.Typer()
    bundle_cli.register(
        Groups(app=app, data_import=sub, data_synth=sub, train=sub, evaluate=sub, predict=sub)
    )
    return app


def test_keygen_cli_writes_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(_app(), ["keygen", "--out", str(tmp_path / "k")])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE((tmp_path / "k" / "signing.key").stat().st_mode) == 0o600
    assert (tmp_path / "k" / "signing.pub").is_file()
    again = runner.invoke(_app(), ["keygen", "--out", str(tmp_path / "k")])
    assert again.exit_code == 2 and "refusing to replace" in again.output
    forced = runner.invoke(_app(), ["keygen", "--out", str(tmp_path / "k"), "--force"])
    assert forced.exit_code == 0


@pytest.mark.faults
def test_bundle_cli_with_a_non_run_directory_fails_clearly(tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(_app(), ["keygen", "--out", str(tmp_path / "k")])
    res = runner.invoke(
        _app(),
        [
            "bundle",
            str(tmp_path),
            "--sign-key",
            str(tmp_path / "k" / "signing.key"),
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 2
    assert "run.json not found" in res.output and not (tmp_path / "b").exists()


@pytest.mark.faults
def test_bundle_cli_with_a_missing_key_fails_before_any_work(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        _app(), ["bundle", str(tmp_path), "--sign-key", str(tmp_path / "nokey"), "--out", str(tmp_path / "b")]
    )
    assert res.exit_code == 2


def test_engine_cli_without_tensorrt_says_so(tmp_path: Path) -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from helpers.bundles import runs

    from export.bundle import build_bundle
    from export.signing import keygen

    keygen(tmp_path / "k")
    bundle = build_bundle(runs(tmp_path, unet=False), tmp_path / "k" / "signing.key", tmp_path / "b")
    res = CliRunner().invoke(
        _app(), ["engine", str(bundle), "--public-key", str(tmp_path / "k" / "signing.pub")]
    )
    assert res.exit_code == 2
    assert "tensorrt Python package is not importable" in res.output
    assert not (bundle / "engines").exists() or not any((bundle / "engines").glob("*.engine"))


def test_inference_settings_defaults_and_rejections() -> None:
    s = InferenceSettings()
    assert s.backend == "onnxruntime" and s.precision == "int8" and s.state_dir is None
    with pytest.raises(pydantic.ValidationError):
        InferenceSettings.model_validate({"backend": "openvino"})
    with pytest.raises(pydantic.ValidationError):
        InferenceSettings.model_validate({"bundel_dir": "typo"})
    with pytest.raises(pydantic.ValidationError):
        InferenceSettings.model_validate({"golden_tolerance": 0})


def test_default_settings_point_at_the_committed_demo_bundle_but_trust_no_key() -> None:
    s = InferenceSettings()
    assert s.bundle_dir.is_absolute() and s.bundle_dir.name == "demo"
    assert s.public_key is None  # no insecure default (issue 13): the demo names the demo key itself


def test_agent_bundle_verify_command_line_exit_codes(tmp_path: Path) -> None:
    """The acceptance-check form `agent bundle verify BUNDLE_DIR --public-key KEY [--json]`, as a process."""
    import json
    import shutil
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    bundle, pub = repo / "bundles" / "demo", repo / "bundles" / "demo-keys" / "signing.pub"
    if not (bundle / "manifest.json").is_file():
        pytest.skip("bundles/demo not built yet")
    cmd = [sys.executable, "-m", "agent.cli", "bundle", "verify"]
    ok = subprocess.run(
        [*cmd, str(bundle), "--public-key", str(pub), "--json"], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["bundle_id"] == "demo-synthetic"
    bad = tmp_path / "demo"
    shutil.copytree(bundle, bad)
    (bad / "unet.fp32.onnx").write_bytes(b"\0" * 64)
    res = subprocess.run([*cmd, str(bad), "--public-key", str(pub)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "REJECTED" in res.stderr and "unet.fp32.onnx" in res.stderr


@pytest.mark.faults
def test_bundle_refuses_runs_with_nan_inputs_or_without_feature_names(tmp_path: Path) -> None:
    import numpy as np
    from helpers.bundles import displacement_model

    from agent.errors import ExportError
    from export.bundle import build_bundle
    from export.runs import LoadedRun
    from export.signing import keygen

    keygen(tmp_path / "k")
    model = displacement_model(steps=1)
    model.calibration_inputs["window"][3, 2, 1] = np.nan
    with pytest.raises(ExportError, match="calibration input 'window' has 1 non-finite"):
        build_bundle(
            [LoadedRun("displacement", tmp_path, [model])], tmp_path / "k" / "signing.key", tmp_path / "b"
        )
    model = displacement_model(steps=1)
    del model.meta["feature_names"]
    with pytest.raises(ExportError, match="feature_names"):
        build_bundle(
            [LoadedRun("displacement", tmp_path, [model])], tmp_path / "k" / "signing.key", tmp_path / "b"
        )
    assert not (tmp_path / "b").exists() and not (tmp_path / ".b.partial").exists()
