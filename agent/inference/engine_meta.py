"""TensorRT engine sidecars: where engines live in a bundle, what was recorded at build, and the check
that an engine fits this device, this TensorRT and the signed ONNX it was built from (pure functions)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import EngineMismatchError
from agent.inference.manifest import ENGINE_DIR, sha256_file

SIDECAR_SCHEMA = 1


@dataclass(frozen=True)
class DeviceIdentity:
    """What an engine is specific to (TensorRT engines are not portable across these)."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" on Jetson Orin


@dataclass
class EngineSidecar:
    model: str
    variant: str
    onnx_file: str
    onnx_sha256: str
    engine_sha256: str
    device: DeviceIdentity
    flags: dict[str, Any]
    max_batch: int
    built_at: str
    golden_error_over_tolerance: dict[str, float] = field(default_factory=dict)
    schema: int = SIDECAR_SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, path: Path) -> EngineSidecar:
        try:
            d = json.loads(text)
            device = DeviceIdentity(**d.pop("device"))
            return cls(device=device, **d)
        except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
            raise EngineMismatchError(
                f"{path}: engine sidecar is unreadable ({exc})",
                fix="rebuild the engine on this device: `agent-export engine BUNDLE_DIR`",
            ) from exc


def engine_path(bundle_dir: Path, model: str, variant: str) -> Path:
    return Path(bundle_dir) / ENGINE_DIR / f"{model}.{variant}.engine"


def sidecar_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def write_sidecar(engine: Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(engine)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(sidecar.to_json(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_sidecar(engine: Path) -> EngineSidecar:
    path = sidecar_path(engine)
    if not engine.is_file():
        raise EngineMismatchError(
            f"no TensorRT engine at {engine}", fix="build it on this device: `agent-export engine BUNDLE_DIR`"
        )
    if not path.is_file():
        raise EngineMismatchError(
            f"{engine} has no sidecar {path.name}; its origin is unknown",
            fix="rebuild the engine with `agent-export engine BUNDLE_DIR` (it writes both files)",
        )
    return EngineSidecar.from_json(path.read_text("utf-8"), path=path)


def check_sidecar(
    sidecar: EngineSidecar,
    *,
    engine: Path,
    device: DeviceIdentity,
    onnx_sha256: str,
    check_engine_hash: bool = True,
) -> None:
    """Raise EngineMismatchError unless the engine was built here, by this TensorRT, from this ONNX."""
    fix = "rebuild the engine on this device: `agent-export engine BUNDLE_DIR`"
    if sidecar.schema != SIDECAR_SCHEMA:
        raise EngineMismatchError(f"{engine}: sidecar schema {sidecar.schema} is unknown", fix=fix)
    if sidecar.device.tensorrt_version != device.tensorrt_version:
        raise EngineMismatchError(
            f"{engine} was built by TensorRT {sidecar.device.tensorrt_version}; this device has "
            f"{device.tensorrt_version} (engines do not load across TensorRT versions)",
            fix=fix,
        )
    if (sidecar.device.gpu_name, sidecar.device.compute_capability) != (
        device.gpu_name,
        device.compute_capability,
    ):
        raise EngineMismatchError(
            f"{engine} was built for {sidecar.device.gpu_name} (sm {sidecar.device.compute_capability}); "
            f"this device "
            f"is {device.gpu_name} (sm {device.compute_capability})",
            fix=fix,
        )
    if sidecar.onnx_sha256 != onnx_sha256:
        raise EngineMismatchError(
            f"{engine} was built from another ONNX file (sha256 {sidecar.onnx_sha256[:12]}..., the bundle's "
            f"{sidecar.onnx_file} is {onnx_sha256[:12]}...): it belongs to an older bundle",
            fix=fix,
        )
    if check_engine_hash and sha256_file(engine) != sidecar.engine_sha256:
        raise EngineMismatchError(
            f"{engine}: sha256 differs from its sidecar: the engine file was replaced or corrupted", fix=fix
        )


def current_device(device_index: int = 0) -> DeviceIdentity:
    """This machine's TensorRT version and GPU (imports tensorrt and pycuda lazily)."""
    from agent.inference.cuda_mem import gpu_identity, import_tensorrt

    trt = import_tensorrt()
    name, cc = gpu_identity(device_index)
    return DeviceIdentity(tensorrt_version=str(trt.__version__), gpu_name=name, compute_capability=cc)
