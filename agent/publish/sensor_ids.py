"""Which sensors stand behind each warning source, for the alert payloads (port, device, kind, station).

A subscriber reading "velocity: watch" must be able to tell which receiver said so. The table of which
port kind feeds which source is data; the ports come from the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.sensors.settings import SensorsConfig

# Port kind -> the warning sources its measurements feed (agent/warning/levels.py SOURCES).
SOURCES_OF_KIND: Mapping[str, tuple[str, ...]] = {
    "gnss": ("velocity", "inverse_velocity", "forecast"),
    "bridge": ("wire", "rainfall", "seismic", "forecast", "spatial"),
}


def sensor_identities(sensors: SensorsConfig) -> dict[str, list[dict[str, Any]]]:
    """source -> ``{"port", "device", "kind", "station"}`` of every enabled port that feeds it."""
    out: dict[str, list[dict[str, Any]]] = {}
    for port in sensors.enabled_ports():
        ident = {"port": port.name, "device": port.path, "kind": port.kind, "station": port.station}
        for source in SOURCES_OF_KIND[port.kind]:
            out.setdefault(source, []).append(ident)
    return out
