"""lews-agent: the gateway side of a landslide early-warning system (no torch here)."""

from __future__ import annotations

__version__ = "0.1.0"
