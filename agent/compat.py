"""The few things the gateway runtime needs that Python 3.11 added, for Python 3.10 (JetPack 6).

JetPack 6.x ships Python 3.10 with TensorRT bindings built for it, so `agent/` runs on 3.10-3.12. Use
these instead of the 3.11-only spellings (ruff's target-version py310 for agent/ flags those):

- ``UTC`` for ``datetime.UTC``;
- ``tomllib`` (the standard library's on 3.11+, ``tomli`` on 3.10: same API);
- ``fromisoformat`` for ``datetime.fromisoformat`` (3.10's does not read a trailing ``Z``);
- ``level_names()`` for ``logging.getLevelNamesMapping()``.

``firmware_bridge/`` is independent of ``agent/`` and keeps its one StrEnum equivalent itself.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the Python 3.10 gateway test run
    import tomli as tomllib

__all__ = ["UTC", "fromisoformat", "level_names", "tomllib"]

UTC = timezone.utc


def fromisoformat(text: str) -> datetime:
    """`datetime.fromisoformat`, also on 3.10 for the 'Z' suffix (UTC) every payload here uses."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    return datetime.fromisoformat(s)


_LEVELS = ("CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET")


def level_names() -> dict[str, int]:
    """Logging level name -> number (`logging.getLevelNamesMapping()` on 3.11+)."""
    mapping = getattr(logging, "getLevelNamesMapping", None)
    if mapping is not None:
        return dict(mapping())
    return {name: int(logging.getLevelName(name)) for name in _LEVELS}
