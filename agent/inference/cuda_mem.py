"""All CUDA memory handling of the TensorRT backend, through pycuda, in one place.

A `CudaSession` holds the device's *primary* context (`retain_primary_context`, the context the CUDA
runtime and therefore TensorRT use), one stream and the device/pinned-host buffers. TensorRT and pycuda
thus share one context instead of pycuda creating a second one (`make_context`) that TensorRT's runtime
calls would not see. It must be created, used and closed by ONE thread (the inference thread, see
trt_backend.OwnerThread): the context is pushed in that thread at creation, popped and released at close.
pycuda stays (design card); docs/jetson.md says why not cuda-python.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agent.errors import BackendUnavailableError

log = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the tensorrt Python package is not importable ({exc})",
            fix="on a Jetson install JetPack 6.1+ (TensorRT 10) and python3-libnvinfer; elsewhere use "
            "inference.backend = 'onnxruntime'",
        ) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major != 10:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} found; this agent uses the TensorRT 10 API",
            fix="use JetPack 6.1 or later (TensorRT 10.3), see docs/jetson.md",
        )
    return trt


def _driver() -> Any:
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendUnavailableError(
            f"pycuda is not importable ({exc})",
            fix="pip install pycuda on the device (needs the CUDA toolkit)",
        ) from exc
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            raise BackendUnavailableError(
                "CUDA reports no GPU", fix="check the driver (nvidia-smi / tegrastats)"
            )
    except cuda.Error as exc:
        raise BackendUnavailableError(f"CUDA is not usable ({exc})", fix="check the NVIDIA driver") from exc
    return cuda


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor")."""
    cuda = _driver()
    dev = cuda.Device(device_index)
    major, minor = dev.compute_capability()
    return str(dev.name()), f"{major}.{minor}"


class CudaSession:
    """Context + stream + named buffers; grows buffers on demand; explicit close()."""

    def __init__(self, device_index: int = 0) -> None:
        self._cuda = _driver()
        # the primary context, shared with TensorRT (CUDA runtime); not current until pushed
        self._ctx = self._cuda.Device(device_index).retain_primary_context()
        self._ctx.push()
        self.stream = self._cuda.Stream()
        self._device: dict[str, tuple[Any, int]] = {}  # name -> (DeviceAllocation, nbytes)
        self._host: dict[str, np.ndarray] = {}
        self._closed = False

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def device_ptr(self, name: str, nbytes: int) -> int:
        """Device buffer for tensor `name` with at least `nbytes` (re-allocated when too small)."""
        buf = self._device.get(name)
        if buf is None or buf[1] < nbytes:
            if buf is not None:
                buf[0].free()
            self._device[name] = (self._cuda.mem_alloc(max(nbytes, 1)), nbytes)
        return int(self._device[name][0])

    def host(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        """Page-locked host array for `name` of exactly `shape` (a view on a reusable buffer)."""
        n = int(np.prod(shape))
        buf = self._host.get(name)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = self._cuda.pagelocked_empty(n, dtype)
            self._host[name] = buf
        return buf[:n].reshape(shape)

    def upload(self, name: str, array: np.ndarray) -> int:
        host = self.host(name, array.shape, array.dtype)
        np.copyto(host, array)
        ptr = self.device_ptr(name, host.nbytes)
        self._cuda.memcpy_htod_async(ptr, host, self.stream)
        return ptr

    def download(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        host = self.host(name, shape, dtype)
        self._cuda.memcpy_dtoh_async(host, self._device[name][0], self.stream)
        return host

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.stream.synchronize()
            for buf, _ in self._device.values():
                buf.free()
            self._device.clear()
            self._host.clear()
        finally:
            self._ctx.pop()  # no longer current in this thread
            self._ctx.detach()  # drop our reference on the primary context
            log.info("CUDA primary context released")
