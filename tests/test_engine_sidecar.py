"""TensorRT engine side: sidecar checks (pure), build options, the owner thread, and clear errors here.

No torch here (the builder is agent/inference/trt_build.py), so this runs in the 3.10 gateway venv too.
The GPU build/run check is `agent selftest --backend tensorrt` (tests/test_selftest.py, marked gpu).
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
from agent.inference.trt_build import DAEMON_BATCH, BuildOptions, profile_shapes

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
    assert profile_shapes(("batch", 6, 14), 8, 1) == ((1, 6, 14), (1, 6, 14), (8, 6, 14))
    with pytest.raises(ExportError, match="max-batch"):
        profile_shapes(("batch", 6, 14), 0)
    with pytest.raises(ExportError, match=r"outside 1\.\.8"):
        profile_shapes(("batch", 6, 14), 8, 9)
    assert BuildOptions().strongly_typed is True  # no weakly typed (FP16/INT8 flag) builds any more


def test_profile_opt_batch_is_the_batch_the_daemon_runs() -> None:
    from agent.riskmap import BATCH

    opts = BuildOptions(max_batch=8)
    assert opts.opt_for("unet") == BATCH == DAEMON_BATCH["unet"]
    assert opts.opt_for("displacement") == 1  # one window per forecast
    assert BuildOptions(max_batch=1).opt_for("unet") == 1  # capped at the profile maximum
    assert BuildOptions(opt_batch=2).opt_for("unet") == 2


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


def test_a_working_engine_is_set_aside_not_lost_while_a_new_one_is_checked(tmp_path: Path) -> None:
    from agent.inference.trt_build import _set_aside

    engine, _ = _engine(tmp_path)
    moved = _set_aside(engine)
    assert [k.name for k, _ in moved] == ["unet.int8_trt.engine.prev", "unet.int8_trt.engine.json.prev"]
    assert not engine.exists() and all(k.is_file() for k, _ in moved)
    assert _set_aside(engine) == []  # nothing there: nothing to keep


def test_a_call_that_hangs_times_out_and_the_thread_is_then_refused() -> None:
    from agent.errors import InferenceTimeoutError

    owner = OwnerThread("test-hang")
    release = threading.Event()
    try:
        with pytest.raises(InferenceTimeoutError, match=r"did not answer within 0\.2 s"):
            owner.call(release.wait, timeout=0.2)
        assert owner.hung
        with pytest.raises(BackendUnavailableError, match="hung in an earlier call"):
            owner.call(lambda: 1, timeout=5)
    finally:
        release.set()
        owner.stop()


class _FakeTrt:
    """Just the names make_logger / attach_timing_cache use, to check our mapping and decisions."""

    class ILogger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self) -> None:
            self.min_severity = 2


def test_tensorrt_messages_go_to_logging_with_their_severity(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from agent.inference.trt_build import make_logger

    bridge = make_logger(_FakeTrt)
    with caplog.at_level(logging.DEBUG, logger="tensorrt"):
        for sev, text in ((0, "internal"), (1, "parse failed"), (2, "fell back"), (4, "tactic 7")):
            bridge.log(sev, text)
    got = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert got == [
        ("tensorrt", logging.CRITICAL, "internal"),
        ("tensorrt", logging.ERROR, "parse failed"),
        ("tensorrt", logging.WARNING, "fell back"),
        ("tensorrt", logging.DEBUG, "tactic 7"),
    ]


class _Config:
    def __init__(self, accept: bool) -> None:
        self.accept = accept
        self.set_calls: list[tuple[object, bool]] = []

    def create_timing_cache(self, data: bytes) -> object:
        return ("cache", data)

    def set_timing_cache(self, cache: object, ignore_mismatch: bool) -> bool:
        self.set_calls.append((cache, ignore_mismatch))
        return self.accept or cache == ("cache", b"")


def test_a_timing_cache_tensorrt_refuses_is_replaced_by_an_empty_one(tmp_path: Path) -> None:
    from agent.inference.trt_build import attach_timing_cache

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"from-another-device")
    info = attach_timing_cache(_Config(accept=False), cache)
    assert info["refused"] is True and info["bytes_in"] == len(b"from-another-device") and not info["loaded"]
    config = _Config(accept=True)
    assert attach_timing_cache(config, cache)["loaded"] is True
    assert config.set_calls == [(("cache", b"from-another-device"), False)]  # never ignore a mismatch
