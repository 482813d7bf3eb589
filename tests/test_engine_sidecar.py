"""TensorRT engine side: sidecar checks (pure), build options, the owner thread, and clear errors here.

The build/run tests marked `gpu` need TensorRT 10 + pycuda + a CUDA GPU and skip elsewhere with the reason.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.errors import BackendUnavailableError, EngineMismatchError, ExportError
from agent.inference.engine_meta import (
    DeviceIdentity,
    EngineSidecar,
    check_sidecar,
    engine_path,
    read_sidecar,
    write_sidecar,
)
from agent.inference.manifest import sha256_file
from agent.inference.trt_backend import OwnerThread
from export.engine import BuildOptions, profile_shapes

ORIN = DeviceIdentity("10.3.0", "Orin", "8.7")


def _engine(
    tmp_path: Path, device: DeviceIdentity = ORIN, onnx_sha: str = "a" * 64
) -> tuple[Path, EngineSidecar]:
    engine = engine_path(tmp_path, "unet", "int8_trt")
    engine.parent.mkdir(parents=True)
    engine.write_bytes(b"serialized-plan-bytes")
    sidecar = EngineSidecar(
        model="unet",
        variant="int8_trt",
        onnx_file="unet.int8_trt.onnx",
        onnx_sha256=onnx_sha,
        engine_sha256=sha256_file(engine),
        device=device,
        flags={"strongly_typed": True},
        max_batch=8,
        built_at="2026-11-22T10:00:00Z",
    )
    write_sidecar(engine, sidecar)
    return engine, sidecar


def test_sidecar_round_trips_and_matches_its_own_device(tmp_path: Path) -> None:
    engine, sidecar = _engine(tmp_path)
    back = read_sidecar(engine)
    assert back == sidecar
    check_sidecar(back, engine=engine, device=ORIN, onnx_sha256="a" * 64)


@pytest.mark.faults
def test_engine_from_another_tensorrt_version_is_refused(tmp_path: Path) -> None:
    engine, sidecar = _engine(tmp_path)
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0; this device has 10\.7\.0"):
        check_sidecar(
            sidecar, engine=engine, device=DeviceIdentity("10.7.0", "Orin", "8.7"), onnx_sha256="a" * 64
        )


@pytest.mark.faults
def test_engine_from_another_gpu_is_refused(tmp_path: Path) -> None:
    engine, sidecar = _engine(tmp_path)
    with pytest.raises(EngineMismatchError, match=r"built for Orin .sm 8\.7.; this device is NVIDIA H100"):
        check_sidecar(
            sidecar,
            engine=engine,
            device=DeviceIdentity("10.3.0", "NVIDIA H100", "9.0"),
            onnx_sha256="a" * 64,
        )


@pytest.mark.faults
def test_engine_of_an_older_bundle_is_refused(tmp_path: Path) -> None:
    engine, sidecar = _engine(tmp_path)
    with pytest.raises(EngineMismatchError, match="built from another ONNX file"):
        check_sidecar(sidecar, engine=engine, device=ORIN, onnx_sha256="b" * 64)


@pytest.mark.faults
def test_replaced_engine_file_or_missing_sidecar_is_refused(tmp_path: Path) -> None:
    engine, sidecar = _engine(tmp_path)
    engine.write_bytes(b"another-plan-of-another-size")
    with pytest.raises(EngineMismatchError, match="sha256 differs from its sidecar"):
        check_sidecar(sidecar, engine=engine, device=ORIN, onnx_sha256="a" * 64)
    engine.with_name(engine.name + ".json").unlink()
    with pytest.raises(EngineMismatchError, match="has no sidecar"):
        read_sidecar(engine)
    engine.with_name(engine.name + ".json").write_text("{not json")
    with pytest.raises(EngineMismatchError, match="unreadable"):
        read_sidecar(engine)
    with pytest.raises(EngineMismatchError, match="no TensorRT engine"):
        read_sidecar(tmp_path / "engines" / "nope.engine")


def test_profile_shapes_cover_batch_one_to_max() -> None:
    assert profile_shapes(("batch", 7, 128, 128), 8) == ((1, 7, 128, 128), (8, 7, 128, 128), (8, 7, 128, 128))
    with pytest.raises(ExportError, match="max-batch"):
        profile_shapes(("batch", 6, 14), 0)
    assert BuildOptions(fp16=True).strongly_typed is False and BuildOptions().strongly_typed is True


def test_owner_thread_runs_every_call_on_one_thread_and_passes_errors_back() -> None:
    owner = OwnerThread("test-owner")
    try:
        idents = {owner.call(threading.get_ident) for _ in range(5)}
        assert len(idents) == 1 and threading.get_ident() not in idents
        with pytest.raises(ZeroDivisionError):
            owner.call(lambda: 1 / 0)
        assert owner.call(lambda: 41 + 1) == 42  # still serving after an error
    finally:
        owner.stop()
    with pytest.raises(BackendUnavailableError, match="stopped"):
        owner.call(lambda: None)


def test_missing_tensorrt_gives_a_clear_error_with_the_fix() -> None:
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    from agent.inference.cuda_mem import import_tensorrt

    with pytest.raises(BackendUnavailableError, match="tensorrt Python package is not importable") as info:
        import_tensorrt()
    assert "onnxruntime" in info.value.fix


def _gpu_ready() -> str:
    try:
        import pycuda.driver as cuda
        import tensorrt  # noqa: F401

        cuda.init()
        return "" if cuda.Device.count() > 0 else "no CUDA device"
    except Exception as exc:  # ImportError or a CUDA driver error
        return f"needs TensorRT 10 + pycuda + a CUDA GPU ({type(exc).__name__}: {exc})"


@pytest.mark.gpu
def test_engine_build_and_tensorrt_backend_reproduce_golden(tmp_path: Path) -> None:
    reason = _gpu_ready()
    if reason:
        pytest.skip(reason)
    from helpers.bundles import runs

    from agent.inference.manifest import model_entries, read_manifest
    from agent.inference.trt_backend import TrtBackend
    from agent.inference.verify import check_golden
    from export.bundle import build_bundle
    from export.engine import build_engines
    from export.signing import keygen

    keygen(tmp_path / "keys")
    bundle = build_bundle(runs(tmp_path), tmp_path / "keys" / "signing.key", tmp_path / "bundle")
    written = build_engines(bundle, BuildOptions(), public_key=tmp_path / "keys" / "signing.pub")
    assert len(written) == 2 and all(p.is_file() for p in written)
    manifest = read_manifest(bundle)
    entries = model_entries(manifest)
    backend = TrtBackend(bundle, entries, manifest["files"], precision="int8")
    try:
        for entry in entries:
            variant = entry.variant_for("tensorrt", "int8")
            assert variant is not None
            ratios = check_golden(backend, bundle, entry, variant)
            assert max(ratios.values()) <= 1.0
    finally:
        backend.close()


def test_a_working_engine_is_set_aside_not_lost_while_a_new_one_is_checked(tmp_path: Path) -> None:
    from export.engine import _set_aside

    engine, _ = _engine(tmp_path)
    moved = _set_aside(engine)
    assert [k.name for k, _ in moved] == ["unet.int8_trt.engine.prev", "unet.int8_trt.engine.json.prev"]
    assert not engine.exists() and all(k.is_file() for k, _ in moved)
    assert _set_aside(engine) == []  # nothing there: nothing to keep
