"""`agent selftest`: the field command on the shipped demo bundle (onnxruntime here; TensorRT where a GPU
is), a bundle altered after signing stopped at the verify stage, the opt-in diagnose check.

No torch, no export/: this module runs in the Python 3.10 gateway venv of `make test` too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.config import config_from_dict
from agent.diagnose.model import Context, Options
from agent.diagnose.table import build_checks
from agent.inference.trt_build import DAEMON_BATCH

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "bundles" / "demo"
DEMO_KEY = REPO / "bundles" / "demo-keys" / "signing.pub"


def _selftest(*args: str, timeout: float = 300) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "LEWS_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "selftest", *args, "--json"],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _copy_demo(tmp_path: Path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(DEMO, dst, ignore=shutil.ignore_patterns("engines"))
    return dst


def test_selftest_passes_on_the_demo_bundle_with_figures() -> None:
    rc, rep, err = _selftest("--bundle", str(DEMO), "--public-key", str(DEMO_KEY))
    assert rc == 0, (rep, err)
    assert rep["ok"] is True and rep["backend"] == "onnxruntime" and rep["precision"] == "int8"
    assert [s["name"] for s in rep["stages"]][:2] == ["verify", "load"] and all(
        s["ok"] for s in rep["stages"]
    )
    assert rep["runtime"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(rep["models"]) == {"displacement", "unet"}
    for name, m in rep["models"].items():
        assert m["variant"] == "int8_ort"
        assert 0 <= max(m["golden_error_over_tolerance"].values()) <= 1.0
        assert m["max_abs_error_vs_fp32"] and all(v >= 0 for v in m["max_abs_error_vs_fp32"].values())
        assert m["batch"] == DAEMON_BATCH[name]  # the batch the daemon runs
        assert m["timed_runs"] >= 10 and m["latency_ms_p95"] >= m["latency_ms_p50"] > 0
        assert m["throughput_per_s"] > 0


def test_selftest_fp32_is_within_its_own_tight_tolerance() -> None:
    rc, rep, err = _selftest("--bundle", str(DEMO), "--public-key", str(DEMO_KEY), "--precision", "fp32")
    assert rc == 0, (rep, err)
    for m in rep["models"].values():
        assert m["variant"] == "fp32"
        assert max(m["max_abs_error_vs_fp32"].values()) < 1e-3  # same graph, same runtime family


@pytest.mark.faults
def test_selftest_stops_at_verify_for_an_edited_bundle(tmp_path: Path) -> None:
    bundle = _copy_demo(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["bundle_id"] = "tampered"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    rc, rep, _ = _selftest("--bundle", str(bundle), "--public-key", str(DEMO_KEY))
    assert rc == 1 and rep["ok"] is False
    assert [s["name"] for s in rep["stages"]] == ["verify"]  # nothing was loaded from it
    assert "signature does not verify" in rep["stages"][0]["detail"] and rep["models"] == {}


def test_selftest_needs_a_key_with_a_bundle() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "selftest", "--bundle", str(DEMO)],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--public-key" in proc.stderr


def test_selftest_on_tensorrt_without_it_fails_at_load_with_the_reason() -> None:
    if not _gpu_reason():
        pytest.skip("TensorRT and a GPU are here: the gpu-marked test covers this backend")
    rc, rep, _ = _selftest("--bundle", str(DEMO), "--public-key", str(DEMO_KEY), "--backend", "tensorrt")
    assert rc == 1 and rep["ok"] is False
    assert [(s["name"], s["ok"]) for s in rep["stages"]] == [("verify", True), ("load", False)]
    assert "tensorrt" in rep["stages"][1]["detail"] and rep["stages"][1]["fix"]
    assert rep["runtime"]["gpu"].startswith("unavailable")


def test_diagnose_runs_the_selftest_only_when_asked(tmp_path: Path) -> None:
    cfg = config_from_dict({"daemon": {"state_dir": str(tmp_path / "state")}})
    names = [c.name for c in build_checks(Context(cfg, options=Options(listen_s=0.1)))]
    assert "inference.selftest" not in names
    asked = [c.name for c in build_checks(Context(cfg, options=Options(listen_s=0.1, selftest=True)))]
    assert asked[-1] == "inference.selftest"


def _gpu_reason() -> str:
    try:
        import pycuda.driver as cuda
        import tensorrt  # noqa: F401

        cuda.init()
        return "" if cuda.Device.count() > 0 else "no CUDA device"
    except Exception as exc:  # ImportError or a CUDA driver error
        return f"needs TensorRT 10 + pycuda + a CUDA GPU ({type(exc).__name__}: {exc})"


@pytest.mark.gpu
def test_selftest_on_tensorrt_builds_the_engine_and_reproduces_golden(tmp_path: Path) -> None:
    """What `pytest -m gpu` checks is exactly the field command (docs/jetson.md)."""
    reason = _gpu_reason()
    if reason:
        pytest.skip(reason)
    bundle = _copy_demo(tmp_path)
    rc, rep, err = _selftest("--bundle", str(bundle), "--public-key", str(DEMO_KEY), "--backend", "tensorrt",
                             timeout=600)  # fmt: skip
    assert rc == 0, (rep, err)
    assert {m["variant"] for m in rep["models"].values()} == {"int8_trt"}
    side = json.loads((bundle / "engines" / "unet.int8_trt.engine.json").read_text())
    assert side["flags"]["strongly_typed"] is True and side["flags"]["opt_batch"] == DAEMON_BATCH["unet"]
    assert side["flags"]["timing_cache"]["bytes_out"] > 0
    rc, rep, err = _selftest("--bundle", str(bundle), "--public-key", str(DEMO_KEY), "--backend", "tensorrt",
                             "--no-build")  # fmt: skip
    assert rc == 0, (rep, err)  # the engines just built load as they are


def test_the_demo_bundle_passes_the_int8_task_gates() -> None:
    """Task-level gates of the shipped INT8 variants (test split, INT8 vs FP32), beside the golden check."""
    manifest = json.loads((DEMO / "manifest.json").read_text())
    models = {m["name"]: m for m in manifest["models"]}
    for vid in ("int8_ort", "int8_trt"):
        disp = models["displacement"]["accuracy"]["int8_vs_fp32"][vid]
        assert abs(disp["displacement_mm"]["mae_change_pct"]) <= 2.0  # MAE within 2 % of FP32
        unet = models["unet"]["accuracy"]["int8_vs_fp32"][vid]["probability"]
        assert unet["f1_dice_points_lost"] <= 2.0 and unet["thresholded_agreement"] >= 0.97
    for m in models.values():
        for v in m["variants"]:
            if v["precision"] == "int8":  # portable golden check (issue 14)
                assert v["golden_reference"] == "fp32" and "calibration inputs" in v["golden_tolerance_basis"]
                # s8 7-bit weights (no u8s8 saturation) except int8_ort of the displacement net (u8)
                u8 = v["id"] == "int8_ort" and m["name"] == "displacement"
                want = "uint8 asymmetric per-channel, 8-bit" if u8 else "7-bit range"
                assert want in v["quantization"]["weights"]
