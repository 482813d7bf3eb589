"""Signed bundles: build from (tiny, synthetic) runs, verify, and reject every tampered variant."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from helpers.bundles import runs
from typer.testing import CliRunner

from agent import bundle_cli
from agent.errors import (
    BundleIntegrityError,
    BundleSchemaError,
    BundleSignatureError,
    GoldenMismatchError,
)
from agent.inference.manifest import canonical_bytes, read_manifest, sha256_file
from agent.inference.verify import verify_bundle
from export.bundle import build_bundle
from export.signing import keygen, load_private_key, sign_manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """One signed bundle (displacement + unet) for the whole module: (bundle_dir, key_dir, other_key_dir)."""
    root = tmp_path_factory.mktemp("bundle")
    keygen(root / "keys")
    keygen(root / "other-keys")
    out = build_bundle(runs(root), root / "keys" / "signing.key", root / "bundle", bundle_id="test-bundle")
    return out, root / "keys", root / "other-keys"


def _copy(built: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(built[0], dst)
    return dst


def _resign(bundle: Path, key_dir: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the manifest, refresh file hashes, and sign correctly (an insider's consistent edit)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    for rel, info in manifest["files"].items():
        info["sha256"] = sha256_file(bundle / rel)
        info["bytes"] = (bundle / rel).stat().st_size
    signed = sign_manifest(manifest, load_private_key(key_dir / "signing.key"))
    (bundle / "manifest.json").write_text(json.dumps(signed))


def test_keygen_writes_private_key_0600_and_refuses_to_overwrite(tmp_path: Path) -> None:
    priv, pub = keygen(tmp_path / "k")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert pub.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleSignatureError, match="refusing to replace"):
        keygen(tmp_path / "k")


def test_built_bundle_verifies_and_records_everything(built: tuple[Path, Path, Path]) -> None:
    bundle, keys, _ = built
    report = verify_bundle(bundle, keys / "signing.pub")
    assert report.models == ["displacement", "unet"]
    # every variant of every model was checked against its golden outputs
    assert set(report.golden) == {
        f"{m}/{v}" for m in ("displacement", "unet") for v in ("fp32", "int8_ort", "int8_trt")
    }
    assert all(max(r.values()) <= 1.0 for r in report.golden.values())
    manifest = read_manifest(bundle)
    disp = manifest["models"][0]
    assert disp["inputs"] == [{"name": "window", "shape": ["batch", 6, 16], "dtype": "float32"}]
    assert disp["feature_names"][0] == "disp_e"
    assert disp["calibration"]["count"] == 128
    ids = {v["id"]: v for v in disp["variants"]}
    assert ids["int8_trt"]["runtimes"] == ["tensorrt"] and ids["int8_ort"]["runtimes"] == ["onnxruntime"]
    assert ids["int8_trt"]["quantization"]["activations"].startswith("int8 symmetric")
    # the per-node decisions are recorded with their measured errors
    decisions = ids["int8_trt"]["quantization"]["decisions"]
    assert {d.get("role") for d in decisions} >= {"input", "head"}
    assert all(d["p99_over_std_if_fp32"] >= 0 for d in decisions if "node" in d)
    acc = disp["accuracy"]
    assert set(acc["metrics"]) == {"fp32", "int8_ort", "int8_trt"}
    assert "mae_change_pct" in acc["int8_vs_fp32"]["int8_ort"]["next_disp"]
    assert 0.0 <= acc["int8_vs_fp32"]["int8_ort"]["exceed_prob"]["thresholded_agreement"] <= 1.0
    assert "f1_dice_points_lost" in manifest["models"][1]["accuracy"]["int8_vs_fp32"]["int8_trt"]["prob"]


def test_cli_verify_accepts_good_and_rejects_bad_with_json(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    bundle, keys, other = built
    app = typer.Typer()
    bundle_cli.register(app)
    app.command("noop")(lambda: None)  # keep `bundle` a sub-group
    runner = CliRunner()
    ok = runner.invoke(
        app, ["bundle", "verify", str(bundle), "--public-key", str(keys / "signing.pub"), "--json"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output.strip().splitlines()[-1])["ok"] is True
    bad = runner.invoke(
        app, ["bundle", "verify", str(bundle), "--public-key", str(other / "signing.pub"), "--json"]
    )
    assert bad.exit_code == 1
    doc = json.loads(bad.output.strip().splitlines()[-1])
    assert doc["ok"] is False and doc["error"] == "BundleSignatureError" and "another key" in doc["reason"]


def test_unsigned_bundle_is_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    del manifest["signature"]
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleSchemaError, match="signature"):
        verify_bundle(b, built[1] / "signing.pub")


def test_bundle_signed_by_another_key_is_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    _resign(b, built[2], lambda m: None)
    with pytest.raises(BundleSignatureError, match="another key"):
        verify_bundle(b, built[1] / "signing.pub")


def test_forged_signature_value_is_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    other = sign_manifest(manifest, load_private_key(built[2] / "signing.key"))
    manifest["signature"]["value"] = other["signature"]["value"]  # right key id, wrong signature bytes
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleSignatureError, match="does not verify"):
        verify_bundle(b, built[1] / "signing.pub")


def test_edited_manifest_breaks_the_signature(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["models"][0]["meta"]["thresholds_mm"] = [30.0, 80.0]  # someone "tunes" the thresholds
    (b / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleSignatureError, match="edited after signing"):
        verify_bundle(b, built[1] / "signing.pub")


def test_canonical_bytes_survive_reformatting(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    manifest = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps(manifest, indent=4))  # whitespace/key order only
    assert canonical_bytes(json.loads((b / "manifest.json").read_text())) == canonical_bytes(manifest)
    verify_bundle(b, built[1] / "signing.pub", golden=False)


def test_truncated_manifest_is_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    text = (b / "manifest.json").read_bytes()
    (b / "manifest.json").write_bytes(text[: len(text) // 2])
    with pytest.raises(BundleIntegrityError, match="truncated or corrupt"):
        verify_bundle(b, built[1] / "signing.pub")


def test_truncated_onnx_is_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    onnx_file = b / "unet.int8_trt.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:100])
    with pytest.raises(BundleIntegrityError, match=r"unet\.int8_trt\.onnx.*truncated"):
        verify_bundle(b, built[1] / "signing.pub")


def test_same_size_edit_of_onnx_is_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    onnx_file = b / "displacement.fp32.onnx"
    data = bytearray(onnx_file.read_bytes())
    data[-20] ^= 0x01  # flip one bit inside a weight
    onnx_file.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="sha256 differs"):
        verify_bundle(b, built[1] / "signing.pub")


def test_missing_and_extra_files_are_rejected(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    (b / "unet.golden.npz").unlink()
    with pytest.raises(BundleIntegrityError, match="missing"):
        verify_bundle(b, built[1] / "signing.pub")
    b2 = tmp_path / "copy2"
    shutil.copytree(built[0], b2)
    (b2 / "evil.onnx").write_bytes(b"x")
    with pytest.raises(BundleIntegrityError, match="not part of the signed bundle"):
        verify_bundle(b2, built[1] / "signing.pub")
    # engines/ is the documented place for unsigned, device-specific engines
    (b2 / "evil.onnx").unlink()
    (b2 / "engines").mkdir()
    (b2 / "engines" / "displacement.int8_trt.engine").write_bytes(b"plan")
    verify_bundle(b2, built[1] / "signing.pub", golden=False)


def test_manifest_shape_disagreeing_with_onnx_is_rejected(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    b = _copy(built, tmp_path)

    def edit(m: dict[str, Any]) -> None:
        m["models"][0]["inputs"][0]["shape"] = ["batch", 6, 32]  # window length 16 in the ONNX

    _resign(b, built[1], edit)
    with pytest.raises(BundleSchemaError, match=r"displacement\.fp32\.onnx.*shape"):
        verify_bundle(b, built[1] / "signing.pub")


def test_feature_order_disagreeing_with_onnx_is_rejected(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    b = _copy(built, tmp_path)

    def edit(m: dict[str, Any]) -> None:
        m["models"][1]["feature_names"] = m["models"][1]["feature_names"][:-1]  # one channel forgotten

    _resign(b, built[1], edit)
    with pytest.raises(BundleSchemaError, match="6 feature names"):
        verify_bundle(b, built[1] / "signing.pub")


def test_schema_violation_is_rejected_even_when_signed(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    b = _copy(built, tmp_path)
    _resign(b, built[1], lambda m: m["models"][0].pop("calibration"))
    with pytest.raises(BundleSchemaError, match="calibration"):
        verify_bundle(b, built[1] / "signing.pub")


def test_golden_vectors_that_do_not_reproduce_are_rejected(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """INT8 is checked against the FP32 outputs within its stated tolerance: a runtime (or a manifest)
    whose INT8 error exceeds it is refused, naming the variant."""
    b = _copy(built, tmp_path)

    def tighten(m: dict[str, Any]) -> None:
        v = next(v for v in m["models"][0]["variants"] if v["id"] == "int8_ort")
        assert v["golden_reference"] == "fp32"
        v["golden_tolerance"] = {k: {"atol": 1e-9, "rtol": 0.0} for k in v["golden_tolerance"]}

    _resign(b, built[1], tighten)
    with pytest.raises(GoldenMismatchError, match="int8_ort"):
        verify_bundle(b, built[1] / "signing.pub")
    b2 = _copy(built, tmp_path / "fp32")
    path = b2 / "displacement.golden.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output__fp32__next_disp"] = arrays["output__fp32__next_disp"] + 1.0  # the reference moved
    np.savez_compressed(path, **arrays)
    _resign(b2, built[1], lambda m: None)
    with pytest.raises(GoldenMismatchError, match="fp32"):
        verify_bundle(b2, built[1] / "signing.pub")


def test_int8_bits_recorded_on_the_build_cpu_do_not_decide(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Issue 14: another CPU's int8 kernels may round differently from the build machine's; the INT8
    outputs recorded there are kept for comparison only, so shifting them changes nothing."""
    b = _copy(built, tmp_path)
    path = b / "displacement.golden.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output__int8_ort__next_disp"] = arrays["output__int8_ort__next_disp"] + 1.0
    np.savez_compressed(path, **arrays)
    _resign(b, built[1], lambda m: None)
    report = verify_bundle(b, built[1] / "signing.pub")
    assert max(report.golden["displacement/int8_ort"].values()) <= 1.0


def test_wrong_public_key_file_gives_a_clear_error(built: tuple[Path, Path, Path], tmp_path: Path) -> None:
    with pytest.raises(BundleSignatureError, match="not a PEM public key"):
        verify_bundle(built[0], built[1] / "signing.key")
    with pytest.raises(BundleSignatureError, match="not found"):
        verify_bundle(built[0], tmp_path / "nope.pub")
    with pytest.raises(BundleIntegrityError, match="does not exist"):
        verify_bundle(tmp_path / "no-bundle", built[1] / "signing.pub")


def test_committed_demo_bundle_verifies_with_the_demo_key() -> None:
    repo = Path(__file__).resolve().parent.parent
    bundle, pub = repo / "bundles" / "demo", repo / "bundles" / "demo-keys" / "signing.pub"
    if not (bundle / "manifest.json").is_file():
        pytest.skip("bundles/demo not built yet: .venv/bin/python -m export.make_default_bundle")
    report = verify_bundle(bundle, pub)
    assert report.bundle_id == "demo-synthetic" and report.models == ["displacement", "unet"]
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
    assert size < 5 * 1024 * 1024
    manifest = read_manifest(bundle)
    assert all(m["meta"].get("synthetic") or m["meta"].get("synthetic_data") for m in manifest["models"])


@pytest.mark.faults
def test_random_corruption_of_the_manifest_always_gives_a_bundle_error(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Flip, drop or insert bytes anywhere in manifest.json: a BundleError every time, never a crash."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from agent.errors import BundleError

    original = (built[0] / "manifest.json").read_bytes()
    b = _copy(built, tmp_path)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        pos=st.integers(min_value=0, max_value=len(original) - 1),
        kind=st.sampled_from(["flip", "drop", "insert", "cut"]),
        byte=st.integers(min_value=0, max_value=255),
    )
    def corrupt(pos: int, kind: str, byte: int) -> None:
        data = bytearray(original)
        if kind == "flip":
            data[pos] ^= byte or 1
        elif kind == "drop":
            del data[pos]
        elif kind == "insert":
            data.insert(pos, byte)
        else:
            data = data[:pos]
        if bytes(data) == original:
            return
        (b / "manifest.json").write_bytes(bytes(data))
        try:
            verify_bundle(b, built[1] / "signing.pub", golden=False)
        except BundleError:
            return
        # the only edits allowed to pass are ones that do not change the JSON value (e.g. whitespace)
        assert json.loads(bytes(data)) == json.loads(original)

    corrupt()


def test_bundle_as_tar_verifies_and_hostile_tars_are_refused(
    built: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    import io
    import tarfile

    from agent.inference.archive import opened_bundle, pack

    tar = pack(built[0], tmp_path / "bundle.tar")
    with opened_bundle(tar) as path:
        assert verify_bundle(path, built[1] / "signing.pub", golden=False).bundle_id == "test-bundle"
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(BundleIntegrityError, match="unsafe, truncated or corrupt"), opened_bundle(evil):
        pass
    assert not (tmp_path.parent / "outside.txt").exists()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    with pytest.raises(BundleIntegrityError), opened_bundle(cut) as path:
        verify_bundle(path, built[1] / "signing.pub", golden=False)
    with (
        pytest.raises(BundleIntegrityError, match="neither a bundle directory nor a tar"),
        opened_bundle(built[1] / "signing.pub"),
    ):
        pass
