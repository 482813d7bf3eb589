"""Level names and colours, and the order of the sources: shared by the figures and the HTML pages."""

from __future__ import annotations

from agent.history import NO_DATA

# Level -> (name, colour).
LEVEL_STYLE: dict[int, tuple[str, str]] = {
    NO_DATA: ("no data", "#9e9e9e"),
    0: ("normal", "#2e7d32"),
    1: ("advisory", "#f9a825"),
    2: ("watch", "#ef6c00"),
    3: ("warning", "#c62828"),
}
THRESHOLD_STYLE = (("advisory", "#f9a825"), ("watch", "#ef6c00"), ("warning", "#c62828"))
SOURCE_ORDER = ("wire", "forecast", "velocity", "inverse_velocity", "rainfall", "seismic", "spatial")
