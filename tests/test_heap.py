"""The daemon's heap helpers: malloc arenas limited before the threads start, freed pages returned."""

from __future__ import annotations

import subprocess
import sys

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
