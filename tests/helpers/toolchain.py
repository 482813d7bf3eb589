"""Which test modules need the offline toolchain (torch, export/, the bundle-building helpers).

A gateway install (Python 3.10 on JetPack 6, `pip install '.[test]'`) has none of it: conftest.py does
not collect those modules there and says so at the end of the run.
"""

from __future__ import annotations

import importlib.util
import re

TOOLCHAIN_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+(?:torch|export|helpers\.bundles|helpers\.export_cli)\b", re.M
)
HAS_TORCH = importlib.util.find_spec("torch") is not None
