"""TensorRT 10 backend: tensors by name, set_tensor_address, execute_async_v3, one stream, and one thread
that owns the CUDA context (every CUDA/TensorRT call runs on it). Explicit close().

Every call into that thread has a deadline (CALL_TIMEOUT_S, START_TIMEOUT_S): a hung GPU raises
InferenceTimeoutError instead of blocking the daemon, and the backend refuses further calls (the
manager then falls back to onnxruntime). TensorRT's log goes through `logging` (trt_build.make_logger).

Engines are built on the device by `agent-export engine` (export/engine.py) and checked here against
their sidecar (TensorRT version, GPU, ONNX sha256) before they are deserialised.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from agent.errors import BackendUnavailableError, InferenceInputError, InferenceTimeoutError
from agent.inference.backend import check_inputs
from agent.inference.engine_meta import DeviceIdentity, check_sidecar, engine_path, read_sidecar
from agent.inference.manifest import ModelEntry, Variant

log = logging.getLogger(__name__)

RUNTIME = "tensorrt"
T = TypeVar("T")
CALL_TIMEOUT_S = 30.0  # one inference (batch <= max_batch) on an Orin takes milliseconds
START_TIMEOUT_S = 300.0  # CUDA init + deserialising every engine


class OwnerThread:
    """A single worker thread that runs submitted callables in order; `call` waits for the result.

    Used so that one thread creates, uses and destroys the CUDA context (CUDA contexts are per thread).
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.hung = False
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # handed to the caller, who re-raises it
                    fut.set_exception(exc)

    def call(self, fn: Callable[[], T], timeout: float | None = None) -> T:
        """Run `fn` on the owner thread; InferenceTimeoutError after `timeout` s (then the thread is
        considered hung: every later call is refused, since CUDA state may be inconsistent)."""
        if self.hung:
            raise BackendUnavailableError(
                f"the inference thread {self._thread.name} is hung in an earlier call",
                fix="restart the agent; check the GPU (tegrastats, dmesg)",
            )
        if not self._thread.is_alive():
            raise BackendUnavailableError("the inference thread has stopped", fix="reload the backend")
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:  # a distinct class from TimeoutError on 3.10
            if not fut.cancel():  # already running: the thread is stuck in it
                self.hung = True
            raise InferenceTimeoutError(
                f"the inference thread {self._thread.name} did not answer within {timeout} s",
                fix="check the GPU (tegrastats, dmesg for nvgpu errors); the agent falls back to onnxruntime",
            ) from None

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class _Engine:
    """One deserialised engine + execution context; only touched on the owner thread."""

    def __init__(self, trt: Any, runtime: Any, path: Path, entry: ModelEntry) -> None:
        self.entry = entry
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(
                f"TensorRT could not deserialise {path}", fix="rebuild it: `agent-export engine BUNDLE_DIR`"
            )
        self.context = self.engine.create_execution_context()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, np.dtype[Any]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self.dtypes[name] = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs.append(name)
            else:
                self.outputs.append(name)
        want_in = [t.name for t in entry.inputs]
        want_out = [t.name for t in entry.outputs]
        if sorted(self.inputs) != sorted(want_in) or sorted(self.outputs) != sorted(want_out):
            raise BackendUnavailableError(
                f"{path}: engine tensors {self.inputs}->{self.outputs} differ from the manifest "
                f"{want_in}->{want_out}",
                fix="rebuild the engine from this bundle",
            )
        # batch range of profile 0 for every input: (min, opt, max) shapes
        self.max_batch = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) for n in self.inputs)

    def run(self, cuda: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feed.values())).shape[0]
        if batch > self.max_batch:
            raise InferenceInputError(
                f"model {self.entry.name!r}: batch {batch} exceeds the engine's profile maximum "
                f"{self.max_batch}",
                fix="split the batch or rebuild with `agent-export engine --max-batch N`",
            )
        for name in self.inputs:
            arr = np.ascontiguousarray(feed[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, tuple(arr.shape))
            self.context.set_tensor_address(name, cuda.upload(f"{self.entry.name}/{name}", arr))
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.outputs:
            shapes[name] = tuple(int(d) for d in self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shapes[name])) * self.dtypes[name].itemsize
            self.context.set_tensor_address(name, cuda.device_ptr(f"{self.entry.name}/{name}", nbytes))
        if not self.context.execute_async_v3(cuda.stream_handle):
            raise BackendUnavailableError(
                f"TensorRT execute_async_v3 failed for model {self.entry.name!r}",
                fix="see the TensorRT log above",
            )
        hosts = {n: cuda.download(f"{self.entry.name}/{n}", shapes[n], self.dtypes[n]) for n in self.outputs}
        cuda.synchronize()
        return {n: np.array(h, dtype=np.float32) for n, h in hosts.items()}


def engine_for(bundle_dir: Path, entry: ModelEntry, precision: str) -> tuple[Variant, Path]:
    variant = entry.variant_for(RUNTIME, precision)
    if variant is None:
        raise BackendUnavailableError(
            f"bundle {bundle_dir} has no {precision} variant of {entry.name!r} for TensorRT",
            fix="use precision fp32, or rebuild the bundle with this agent-export version",
        )
    return variant, engine_path(bundle_dir, entry.name, variant.id)


class TrtBackend:
    """Engines for every model, run on one owner thread with one CUDA context and one stream."""

    name = RUNTIME

    def __init__(
        self,
        bundle_dir: Path,
        entries: Sequence[ModelEntry],
        manifest_files: Mapping[str, Mapping[str, Any]],
        *,
        precision: str = "int8",
        device_index: int = 0,
        device: DeviceIdentity | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        from agent.inference.cuda_mem import import_tensorrt

        trt = import_tensorrt()  # fail fast on the caller's thread, with the fix
        self.precision = precision
        self.call_timeout_s = call_timeout_s
        self._variants: dict[str, Variant] = {}
        paths: dict[str, Path] = {}
        for entry in entries:
            variant, path = engine_for(bundle_dir, entry, precision)
            self._variants[entry.name] = variant
            paths[entry.name] = path
        self._entries = {e.name: e for e in entries}
        self._owner = OwnerThread("lews-tensorrt")
        self._engines: dict[str, _Engine] = {}
        self._cuda: Any = None

        def start() -> None:
            from agent.inference.cuda_mem import CudaSession
            from agent.inference.engine_meta import current_device

            this = device or current_device(device_index)
            for name, path in paths.items():
                onnx_sha = str(manifest_files[self._variants[name].file]["sha256"])
                check_sidecar(read_sidecar(path), engine=path, device=this, onnx_sha256=onnx_sha)
            self._cuda = CudaSession(device_index)
            from agent.inference.trt_build import make_logger

            self._logger = make_logger(trt)  # TensorRT's messages -> logging -> journald priorities
            self._runtime = trt.Runtime(self._logger)
            for name, path in paths.items():
                self._engines[name] = _Engine(trt, self._runtime, path, self._entries[name])
            log.info("TensorRT %s backend on %s: %s", trt.__version__, this.gpu_name, sorted(paths.values()))

        try:
            self._owner.call(start, timeout=START_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def variant_id(self, model_name: str) -> str:
        return self._variants[model_name].id

    def run(self, model_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model_name not in self._engines:
            raise BackendUnavailableError(
                f"model {model_name!r} has no engine loaded", fix="check the bundle"
            )
        feed = check_inputs(self._entries[model_name], inputs)
        engine = self._engines[model_name]
        return self._owner.call(lambda: engine.run(self._cuda, feed), timeout=self.call_timeout_s)

    def close(self) -> None:
        def stop() -> None:
            for eng in self._engines.values():
                del eng.context
                del eng.engine
            self._engines.clear()
            self._runtime = None
            if self._cuda is not None:
                self._cuda.close()
                self._cuda = None

        if self._owner.alive and not self._owner.hung:
            try:
                self._owner.call(stop, timeout=30)
            finally:
                self._owner.stop()
