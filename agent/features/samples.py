"""The unit of data between sensor readers, the store and the feature builders (see docs/development.md)."""

from __future__ import annotations

from dataclasses import dataclass

# Channel name -> how a step aggregates it. Readers must only emit these channels.
CHANNEL_AGGREGATES: dict[str, str] = {
    "gnss.e_mm": "median",
    "gnss.n_mm": "median",
    "gnss.u_mm": "median",
    "gnss.h_acc_mm": "median",
    "gnss.num_sv": "median",
    "rain.mm": "sum",
    "seismic.pgv_mm_s": "max",
    "seismic.trigger": "count_ones",
    "wire.state": "max",
    "device.supply_v": "last",
    "device.temp_c": "last",
}


@dataclass(frozen=True, slots=True)
class Sample:
    """One scalar observation: UTC epoch seconds, channel name (see CHANNEL_AGGREGATES), value."""

    t: float
    channel: str
    value: float
