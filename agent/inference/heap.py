"""Give the heap that a model run freed back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

With the onnxruntime arena off (agent/inference/ort_backend.py) the activations are freed after each
run, but glibc keeps the pages in the process; trimming after a risk map brings the daemon back to
its steady size (measured in bench/bench_memory.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_looked = False


def release_freed_memory() -> None:
    global _trim, _looked
    if not _looked:
        _looked = True
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = None
    if _trim is not None:
        _trim(0)
