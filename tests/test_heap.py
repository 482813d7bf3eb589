"""The daemon's heap helpers: malloc arenas limited before the threads start, freed pages returned."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = r"""
import os, sys
from agent.inference.heap import limit_malloc_arenas, release_freed_memory
print(limit_malloc_arenas(2))
release_freed_memory()
release_freed_memory()
"""


def _run(env_extra: dict[str, str]) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env_extra
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    return out.stdout.strip()


def test_arenas_limited_unless_the_environment_says_otherwise() -> None:
    assert _run({}) == ("True" if sys.platform.startswith("linux") else "False")
    assert _run({"MALLOC_ARENA_MAX": "4"}) == "False"  # the operator's setting wins


ARENAS = r"""
import ctypes, sys, threading
from agent.inference.heap import limit_malloc_arenas
if sys.argv[1] == "limit":
    limit_malloc_arenas()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
def work():  # a thread's first malloc gives it an arena (a new one while glibc's limit allows)
    libc.malloc(4096)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.malloc_stats()  # "Arena N:" per arena, on stderr
"""


def _arenas(mode: str) -> int:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    return sum(1 for line in out.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_the_daemon_runs_on_one_malloc_arena() -> None:
    assert _arenas("free") > 1  # glibc alone gives the threads arenas of their own
    assert _arenas("limit") == 1  # agent run: every thread on the main arena (docs/performance.md)
