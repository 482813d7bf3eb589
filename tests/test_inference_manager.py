"""Model manager: verified load, fallback, rules-only, counted drops, A/B switch at level 0, rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.bundles import TinyDisplacement, displacement_model

from agent.errors import ModelUpdateError
from agent.inference.ab import ABStore
from agent.inference.manager import RULES_ONLY, ModelManager
from agent.inference.manifest import model_entries, read_manifest
from agent.inference.settings import InferenceSettings
from agent.inference.verify import load_golden
from export.bundle import build_bundle
from export.runs import LoadedRun
from export.signing import keygen


class BlowsUpOnLargeInputs(TinyDisplacement):
    """Same interface; its regression output overflows to inf when an input exceeds ~90 (a latent bug)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        reg, prob = super().forward(x)
        return reg * torch.exp(x.amax(dim=(1, 2))[:, None] - 3.0), prob


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mgr")
    keygen(root / "keys")
    key = root / "keys" / "signing.key"
    v1 = displacement_model(seed=0)
    v2 = displacement_model(seed=1)
    bad = displacement_model(seed=2)
    broken = BlowsUpOnLargeInputs(6, 16)
    broken.load_state_dict(bad.module.state_dict())
    bad.module = broken.eval()
    out = {"keys": root / "keys"}
    for name, model in (("v1", v1), ("v2", v2), ("bad", bad)):
        out[name] = build_bundle(
            [LoadedRun("displacement", root / name, [model])], key, root / name, bundle_id=name
        )
    return out


def _settings(bundles: dict[str, Path], **kw: object) -> InferenceSettings:
    base: dict[str, object] = {"bundle_dir": bundles["v1"], "public_key": bundles["keys"] / "signing.pub"}
    base.update(kw)
    return InferenceSettings.model_validate(base)


def _golden_input(bundle: Path) -> dict[str, np.ndarray]:
    entry = model_entries(read_manifest(bundle))[0]
    return load_golden(bundle, entry).inputs


def test_start_on_onnxruntime_reports_status_and_runs(bundles: dict[str, Path]) -> None:
    mgr = ModelManager(_settings(bundles))
    status = mgr.start()
    try:
        assert status["mode"] == "onnxruntime" and status["bundle_id"] == "v1"
        assert status["variants"] == {"displacement": "int8_ort"}
        assert status["warmup_ms"]["displacement"] > 0
        x = _golden_input(bundles["v1"])
        out = mgr.run("displacement", x)
        assert out is not None and out["next_disp"].shape == (x["window"].shape[0], 1)
        assert mgr.counters["runs_ok"] == 1
        entry = mgr.model_entry("displacement")
        assert entry is not None and entry.feature_names[0] == "disp_e" and entry.meta["window"] == 16
        assert mgr.model_entry("unet") is None
    finally:
        mgr.close()


def test_fp32_precision_selects_the_fp32_variant(bundles: dict[str, Path]) -> None:
    mgr = ModelManager(_settings(bundles, precision="fp32"))
    try:
        assert mgr.start()["variants"] == {"displacement": "fp32"}
    finally:
        mgr.close()


def test_tensorrt_without_tensorrt_falls_back_to_onnxruntime_and_says_why(bundles: dict[str, Path]) -> None:
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; the fallback is exercised by the gpu tests")
    except ImportError:
        pass
    mgr = ModelManager(_settings(bundles, backend="tensorrt"))
    try:
        status = mgr.start()
        assert status["mode"] == "onnxruntime"
        assert any(
            r.startswith("tensorrt int8 unavailable: BackendUnavailableError")
            for r in status["fallback_reasons"]
        )
    finally:
        mgr.close()


@pytest.mark.faults
def test_tampered_bundle_gives_rules_only_mode_and_counted_skips(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "tampered"
    shutil.copytree(bundles["v1"], bad)
    onnx_file = bad / "displacement.int8_ort.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    mgr = ModelManager(_settings(bundles, bundle_dir=bad))
    status = mgr.start()
    assert status["mode"] == RULES_ONLY and status["bundle_id"] is None
    assert "truncated" in status["fallback_reasons"][0]
    assert mgr.run("displacement", _golden_input(bundles["v1"])) is None
    assert mgr.status()["counters"]["skipped_rules_only"] == 1
    assert mgr.model_entry("displacement") is None


@pytest.mark.faults
def test_bad_inputs_are_dropped_and_counted_not_raised(bundles: dict[str, Path]) -> None:
    mgr = ModelManager(_settings(bundles))
    mgr.start()
    try:
        x = _golden_input(bundles["v1"])["window"]
        assert mgr.run("displacement", {"window": x[:, :, :8]}) is None  # window too short
        nan = x.copy()
        nan[0, 0, 0] = np.nan
        assert mgr.run("displacement", {"window": nan}) is None
        assert mgr.run("displacement", {"wrong": x}) is None
        assert mgr.counters["dropped_bad_input"] == 3
        assert "do not match the manifest" in mgr.status()["last_error"]
        assert mgr.run("displacement", {"window": x}) is not None  # still serving
    finally:
        mgr.close()


def test_update_waits_for_level_zero_then_commits_after_probation(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    mgr = ModelManager(_settings(bundles, state_dir=tmp_path / "models", probation_runs=3))
    mgr.start()
    try:
        store = ABStore(tmp_path / "models")
        assert store.active() == "a" and mgr.status()["bundle_id"] == "v1"
        staged = mgr.stage_update(bundles["v2"])
        assert staged["state"] == "staged" and staged["slot"] == "b"
        level = {"value": 2}
        assert mgr.try_switch(lambda: level["value"] == 0) is False  # site at level 2: keep v1
        assert mgr.status()["bundle_id"] == "v1" and mgr.counters["switch_deferred_level"] == 1
        level["value"] = 0
        assert mgr.try_switch(lambda: level["value"] == 0) is True
        assert mgr.status()["bundle_id"] == "v2" and mgr.status()["update"]["state"] == "probation"
        x = _golden_input(bundles["v2"])
        for _ in range(3):
            assert mgr.run("displacement", x) is not None
        assert mgr.status()["update"]["state"] == "committed"
        state = json.loads((tmp_path / "models" / "active.json").read_text())
        assert state["slot"] == "b" and state["previous"] == "a"
    finally:
        mgr.close()
    # a restart comes back on the committed slot
    again = ModelManager(_settings(bundles, state_dir=tmp_path / "models"))
    try:
        assert again.start()["bundle_id"] == "v2"
    finally:
        again.close()


@pytest.mark.faults
def test_unsigned_update_is_rejected_and_current_keeps_running(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other-keys"
    keygen(other)
    forged = tmp_path / "forged"
    shutil.copytree(bundles["v2"], forged)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["bundle_id"] = "forged"
    (forged / "manifest.json").write_text(json.dumps(manifest))
    mgr = ModelManager(_settings(bundles, state_dir=tmp_path / "models"))
    mgr.start()
    try:
        with pytest.raises(ModelUpdateError, match="rejected"):
            mgr.stage_update(forged)
        assert mgr.status()["update"]["state"] == "rejected"
        assert mgr.try_switch(lambda: True) is False
        assert mgr.status()["bundle_id"] == "v1" and mgr.run("displacement", _golden_input(bundles["v1"]))
    finally:
        mgr.close()


@pytest.mark.faults
def test_failed_health_check_during_probation_rolls_back(bundles: dict[str, Path], tmp_path: Path) -> None:
    mgr = ModelManager(_settings(bundles, state_dir=tmp_path / "models", precision="fp32", probation_runs=5))
    mgr.start()
    try:
        mgr.stage_update(bundles["bad"])  # verifies fine: its golden vectors reproduce
        assert mgr.try_switch(lambda: True) is True
        assert mgr.status()["bundle_id"] == "bad"
        x = _golden_input(bundles["bad"])["window"].copy()
        assert mgr.run("displacement", {"window": x}) is not None
        x[0, 0, 0] = 200.0  # a real (if extreme) window makes the new model overflow
        assert mgr.run("displacement", {"window": x}) is None
        status = mgr.status()
        assert status["bundle_id"] == "v1" and status["mode"] == "onnxruntime"
        assert status["update"]["state"] == "rolled_back" and "non-finite" in status["update"]["reason"]
        assert json.loads((tmp_path / "models" / "active.json").read_text())["slot"] == "a"
    finally:
        mgr.close()


@pytest.mark.faults
def test_caller_health_check_failure_prevents_the_switch(bundles: dict[str, Path], tmp_path: Path) -> None:
    from agent.errors import GoldenMismatchError
    from agent.inference.manager import Loaded

    def refuse(loaded: Loaded) -> None:
        raise GoldenMismatchError(f"site replay disagrees for {loaded.bundle_id}", fix="do not deploy")

    mgr = ModelManager(_settings(bundles, state_dir=tmp_path / "models"), health_check=refuse)
    mgr.start()
    try:
        mgr.stage_update(bundles["v2"])
        assert mgr.try_switch(lambda: True) is False
        status = mgr.status()
        assert status["bundle_id"] == "v1" and status["update"]["state"] == "rolled_back"
        assert "site replay disagrees" in status["update"]["reason"]
    finally:
        mgr.close()


@pytest.mark.faults
def test_missing_bundle_dir_with_state_dir_gives_rules_only_not_a_crash(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    mgr = ModelManager(_settings(bundles, bundle_dir=tmp_path / "nowhere", state_dir=tmp_path / "models"))
    status = mgr.start()
    assert status["mode"] == RULES_ONLY
    assert "cannot install" in status["fallback_reasons"][0] and "nowhere" in status["fallback_reasons"][0]


def test_update_can_be_staged_from_a_tar(bundles: dict[str, Path], tmp_path: Path) -> None:
    from agent.inference.archive import pack

    tar = pack(bundles["v2"], tmp_path / "v2.tar")
    mgr = ModelManager(_settings(bundles, state_dir=tmp_path / "models"))
    mgr.start()
    try:
        assert mgr.stage_update(tar)["bundle_id"] == "v2"
        assert mgr.try_switch(lambda: True) and mgr.status()["bundle_id"] == "v2"
        assert (tmp_path / "models" / "slot-b" / "manifest.json").is_file()
    finally:
        mgr.close()


@pytest.mark.faults
def test_int8_golden_mismatch_falls_back_to_fp32_of_the_same_bundle(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """E.g. a CPU whose int8 kernels are further from FP32 than the manifest allows: FP32 still serves.
    (Simulated by a signed manifest with a tighter INT8 tolerance than this CPU's INT8 error.)"""
    from export.signing import load_private_key, sign_manifest

    b = tmp_path / "b"
    shutil.copytree(bundles["v1"], b)
    manifest = json.loads((b / "manifest.json").read_text())
    variant = next(v for v in manifest["models"][0]["variants"] if v["id"] == "int8_ort")
    variant["golden_tolerance"] = {k: {"atol": 1e-9, "rtol": 0.0} for k in variant["golden_tolerance"]}
    signed = sign_manifest(manifest, load_private_key(bundles["keys"] / "signing.key"))
    (b / "manifest.json").write_text(json.dumps(signed))
    mgr = ModelManager(_settings(bundles, bundle_dir=b))
    try:
        status = mgr.start()
        assert status["mode"] == "onnxruntime" and status["precision"] == "fp32"
        assert status["variants"] == {"displacement": "fp32"}
        assert any(
            "onnxruntime int8 unavailable: GoldenMismatchError" in r for r in status["fallback_reasons"]
        )
    finally:
        mgr.close()
