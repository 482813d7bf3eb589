"""Give the heap that a model run freed back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

With the onnxruntime arena off (agent/inference/ort_backend.py) the activations are freed after each
run, but glibc keeps the pages in the process; trimming after a risk map brings the daemon back to
its steady size (measured in bench/bench_memory.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_looked = False
M_ARENA_MAX = -8  # glibc mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(n: int = 1) -> bool:
    """At most ``n`` glibc malloc arenas (default one; glibc's: 8 per core, one per busy thread). With
    one arena the risk map's thread reuses the pages the start-up freed, and ``malloc_trim`` gives
    back the top of that heap (it never trims the top of a thread arena, whose trim threshold glibc
    raises to twice the largest freed block): measured ~7 MiB less RSS after a risk map and a lower
    peak, at the same risk map time (bench/bench_memory.py, docs/performance.md). Call before the
    threads start; the environment variable ``MALLOC_ARENA_MAX`` (systemd ``Environment=``) wins when
    set. False where it cannot be set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt(M_ARENA_MAX, n)) if mallopt is not None else False


def release_freed_memory() -> None:
    global _trim, _looked
    if not _looked:
        _looked = True
        _trim = getattr(_libc(), "malloc_trim", None)
    if _trim is not None:
        _trim(0)
