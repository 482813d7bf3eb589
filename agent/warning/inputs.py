"""What the warning engine sees at a time t: plain numbers and arrays, decoupled from the sensor code.

Every input carries ``t``: the UTC epoch seconds when it was last updated (for the wire: last read).
A missing input is ``None`` in the :class:`Snapshot`; the rules turn that into ``NO_DATA``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray


class WireState(IntEnum):
    """Wire alarm states; the numbers are the ``wire.state`` channel values (docs/development.md)."""

    INTACT = 0
    TRIPPED = 1
    OPEN_CIRCUIT = 2
    SHORT = 3


@dataclass(frozen=True, slots=True)
class WireInput:
    """Latest wire-alarm reading: state, when it was last read (``t``) and when it last changed."""

    state: WireState
    t: float
    changed_at: float


@dataclass(frozen=True, slots=True)
class ForecastInput:
    """Latest displacement forecast from the model.

    ``predicted_mm``: predicted cumulative displacement over ``horizon_s`` (mm; older bundles: one step);
    ``interval_lo_mm``/``interval_hi_mm``: conformal interval at ``interval_level`` (e.g. 0.9), NaN if absent;
    ``exceedance``: threshold in mm -> probability that the displacement over the horizon exceeds it;
    ``alarm_probability``/``alarm_cutoff``: the site's warning target (K-day velocity above V);
    ``completeness``: fraction (0..1) of the model's input window that was present.
    """

    predicted_mm: float
    t: float
    model_name: str
    model_version: str
    completeness: float
    interval_lo_mm: float = float("nan")
    interval_hi_mm: float = float("nan")
    interval_level: float = float("nan")
    exceedance: Mapping[float, float] = field(default_factory=dict)
    horizon_s: float = 86400.0
    # P(K-day velocity > the site's alarm rate V within the horizon) and its calibrated cutoff (NaN: none)
    alarm_probability: float = float("nan")
    alarm_cutoff: float = float("nan")


@dataclass(frozen=True, slots=True)
class DisplacementInput:
    """Recent cumulative horizontal displacement (mm) at ``times`` (epoch s), with per-step completeness.

    ``t`` is the time of the last update (normally ``times[-1]``). NaN displacements are gaps.
    """

    times: NDArray[np.float64]
    displacement_mm: NDArray[np.float64]
    completeness: NDArray[np.float64]
    t: float

    @classmethod
    def from_east_north(
        cls,
        times: NDArray[np.float64],
        east_mm: NDArray[np.float64],
        north_mm: NDArray[np.float64],
        completeness: NDArray[np.float64],
        azimuth_deg: float | None = None,
    ) -> DisplacementInput:
        """Horizontal displacement from east/north (mm, relative to the reference): projected on the
        slide's motion azimuth (degrees clockwise from north) when given, else hypot(east, north).
        The projection avoids the positive bias of hypot on noise around zero."""
        t = np.asarray(times, dtype=np.float64)
        e = np.asarray(east_mm, dtype=np.float64)
        n = np.asarray(north_mm, dtype=np.float64)
        if azimuth_deg is None:
            disp = np.hypot(e, n)
        else:
            az = np.deg2rad(azimuth_deg)
            disp = e * np.sin(az) + n * np.cos(az)
        last = float(np.nanmax(t)) if t.size else float("nan")
        return cls(t, disp, np.asarray(completeness, dtype=np.float64), last)


@dataclass(frozen=True, slots=True)
class RainInput:
    """Rain at the site.

    ``intensities_mm_h``: rolling mean intensity (mm/h) keyed by window length in hours;
    ``event_duration_h``/``event_mean_intensity_mm_h``: the current (or most recent) rain event;
    ``antecedent_mm``: antecedent totals keyed by window in days (reported, not graded);
    ``completeness``: fraction of the rain record present over the longest window.
    """

    t: float
    intensities_mm_h: Mapping[float, float]
    event_duration_h: float
    event_mean_intensity_mm_h: float
    completeness: float
    antecedent_mm: Mapping[float, float] = field(default_factory=dict)
    # The hourly record behind the summary (for the calibrated rules' N-hour/N-day windows): step start
    # times, mm per hour, and whether the gauge reported in that hour. None when not available.
    hourly_start: NDArray[np.float64] | None = None
    hourly_mm: NDArray[np.float64] | None = None
    hourly_present: NDArray[np.bool_] | None = None


@dataclass(frozen=True, slots=True)
class SeismicInput:
    """Seismic summary over the last ``window_s``: peak ground velocity and STA/LTA trigger-ons."""

    t: float
    pgv_mm_s: float
    trigger_count: int
    window_s: float
    completeness: float = 1.0


@dataclass(frozen=True, slots=True)
class SpatialInput:
    """Summary of the U-Net / LSI risk map over the site's tiles."""

    t: float
    area_fraction_above: float
    probability_threshold: float
    max_probability: float
    model_name: str
    model_version: str
    completeness: float = 1.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the engine sees at one evaluation; any part may be missing (``None``)."""

    site: str
    wire: WireInput | None = None
    forecast: ForecastInput | None = None
    displacement: DisplacementInput | None = None
    rain: RainInput | None = None
    seismic: SeismicInput | None = None
    spatial: SpatialInput | None = None
