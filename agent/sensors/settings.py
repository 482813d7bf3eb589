"""Configuration sections of the sensing side: serial ports, GNSS, rain, seismic and capture.

The root ``agent/config.py`` composes :class:`SensorsConfig` into the agent's configuration file (the
store's section is ``agent/features/settings.py``). Every model forbids unknown keys (a typo in a field
name is an error, not a silent default) and every field says what it means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SerialPortConfig(_Section):
    """One serial device: where it is and what speaks on it."""

    name: str = Field(
        description="Short unique name of the port, used in counters, captures and logs (e.g. 'gnss0').",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
    )
    path: str = Field(
        description="Device path; prefer the stable /dev/serial/by-id/... link over /dev/ttyUSBn.",
    )
    baud: int = Field(default=115200, gt=0, description="Line speed in bit/s.")
    kind: Literal["gnss", "bridge"] = Field(
        description="What speaks on the port: 'gnss' (u-blox UBX and/or NMEA) or 'bridge' "
        "(the site microcontroller: rain, seismic, wire alarm, heartbeat).",
    )
    enabled: bool = Field(default=True, description="Disabled ports are neither opened nor replayed.")
    station: str | None = Field(
        default=None,
        description="Station id of what speaks on the port (e.g. the GNSS monument 'URB1'); named in alerts.",
        max_length=64,
    )


class GnssReferenceConfig(_Section):
    """The local frame origin: east/north/up millimetres are measured from here."""

    lat: float = Field(ge=-90, le=90, description="Reference latitude (WGS84, deg).")
    lon: float = Field(ge=-180, le=360, description="Reference longitude (WGS84, deg).")
    h_m: float = Field(description="Reference ellipsoidal height (WGS84, m).")


class GnssGateConfig(_Section):
    """Which epochs are good enough (agent.sensors.gnss.GateConfig; rules in docs/sensors.md)."""

    fix_types: list[int] = Field(
        default=[3, 4], description="Accepted UBX fix types (3 = 3D, 4 = GNSS + dead reckoning)."
    )
    min_carrier: Literal["none", "float", "fixed"] = Field(
        default="fixed", description="Minimum RTK carrier solution: none, float or fixed."
    )
    min_num_sv: int = Field(default=5, ge=0, description="Minimum satellites used in the solution.")
    max_h_acc_mm: float = Field(default=50.0, gt=0, description="Largest usable horizontal accuracy (mm).")
    max_hdop: float = Field(default=5.0, gt=0, description="Largest usable HDOP.")
    require_fix_ok: bool = Field(default=True, description="Require the receiver's gnssFixOK flag.")
    accept_unknown: bool = Field(
        default=True, description="Let epochs whose accuracy/HDOP/satellites are not reported pass."
    )


class GnssConfig(_Section):
    """Reference point and quality gating of GNSS epochs."""

    reference: GnssReferenceConfig | None = Field(
        default=None, description="Surveyed reference position; required when a gnss port is enabled."
    )
    gate: GnssGateConfig | Literal["rtk-fixed", "rtk-float", "standalone", "none"] = Field(
        default="rtk-fixed", description="Gate thresholds, or the name of a preset."
    )
    sources: list[Literal["NAV-RELPOSNED", "NAV-PVT", "NAV-SOL", "GNS", "GGA"]] = Field(
        default=["NAV-PVT", "GNS", "GGA"],
        description="Position messages in order of preference when one epoch has several.",
    )
    relpos_origin_mm: tuple[float, float, float] = Field(
        default=(0.0, 0.0, 0.0), description="The reference as seen from the RTK base (NAV-RELPOSNED)."
    )
    epoch_rate_hz: float = Field(
        default=1.0,
        gt=0,
        description="Epochs per second the receiver is configured for; a step's completeness is its "
        "count of gated epochs divided by step length x this rate.",
    )
    discipline_clock: bool = Field(
        default=True,
        description="Correct the agent's time by the receiver's valid UTC when the system clock is off "
        "by more than 5 s (agent/sensors/clock.py); off for a simulated clock (the demo).",
    )

    def processor_mapping(self) -> dict[str, Any]:
        """The mapping ``agent.sensors.gnss.GnssConfig.from_mapping`` reads."""
        data = self.model_dump(exclude={"epoch_rate_hz", "discipline_clock"})
        if data["reference"] is None:
            data.pop("reference")
        return data


class RainConfig(_Section):
    """Tipping-bucket rain gauge behind the bridge."""

    mm_per_tip: float = Field(default=0.2, gt=0, description="Rain depth of one bucket tip (mm).")
    frame_period_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between RAIN frames when it does not rain (the bridge also sends on tips).",
    )
    max_gap_s: float = Field(
        default=60.0,
        gt=0,
        description="A gap between RAIN frames longer than this counts as missing time in the step's "
        "completeness (its rain is still counted: the tip counter is cumulative).",
    )
    max_mm_per_h: float = Field(
        default=400.0,
        gt=0,
        description="Rain rate above which a counter jump is implausible and not passed on (counted).",
    )

    @model_validator(mode="after")
    def _check(self) -> RainConfig:
        if self.max_gap_s < self.frame_period_s:
            raise ValueError(
                f"max_gap_s ({self.max_gap_s}) must be at least frame_period_s ({self.frame_period_s}): "
                "otherwise every normal gap between RAIN frames counts as missing"
            )
        return self


class SeismicConfig(_Section):
    """Geophone behind the bridge: conversion to ground velocity, PGV windows and the STA/LTA trigger.

    Mirrors ``agent.sensors.seismic.SeismicConfig`` (definitions in docs/sensors.md).
    """

    sensitivity_counts_per_m_s: float = Field(
        default=28.8 * 8388608 / 2.5,
        gt=0,
        description="Digitiser counts per m/s of ground velocity at gain 1 (default: a 28.8 V/(m/s) "
        "geophone on a 24-bit +/-2.5 V ADC). The SEISMIC block's own gain divides it further.",
    )
    band_hz: tuple[float, float] = Field(default=(1.0, 20.0), description="Trigger band-pass corners (Hz).")
    corners: int = Field(default=4, ge=1, le=10, description="Butterworth order of the band-passes.")
    pgv_band_hz: tuple[float, float] | None = Field(
        default=(0.5, 40.0), description="Band-pass (Hz) for peak ground velocity; None: the trigger band."
    )
    pgv_window_s: float = Field(default=60.0, gt=0, description="Window length of one PGV sample (s).")
    sta_s: float = Field(default=0.5, gt=0, description="Short-term average window (s).")
    lta_s: float = Field(default=10.0, gt=0, description="Long-term average window (s).")
    thr_on: float = Field(default=3.5, gt=0, description="STA/LTA ratio that switches the trigger on.")
    thr_off: float = Field(default=1.0, gt=0, description="STA/LTA ratio below which it switches off.")
    min_duration_s: float = Field(default=0.0, ge=0, description="Shorter events are counted, not reported.")
    warmup_s: float | None = Field(
        default=None, ge=0, description="No trigger until this much data (s); None: lta_s."
    )
    settle_s: float = Field(default=2.0, ge=0, description="No PGV for this long after a filter (re)start.")
    max_time_error_s: float = Field(
        default=1.0,
        gt=0,
        description="A block whose time disagrees with its sample index by more than this (s) starts a "
        "new segment (filters reset, counted as a time jump).",
    )

    @model_validator(mode="after")
    def _check(self) -> SeismicConfig:
        for name in ("band_hz", "pgv_band_hz"):
            band = getattr(self, name)
            if band is not None and not 0 < band[0] < band[1]:
                raise ValueError(f"{name} must be (low, high) with 0 < low < high, got {band}")
        if self.sta_s >= self.lta_s:
            raise ValueError(f"sta_s ({self.sta_s}) must be shorter than lta_s ({self.lta_s})")
        if self.thr_off > self.thr_on:
            raise ValueError(f"thr_off ({self.thr_off}) must not exceed thr_on ({self.thr_on})")
        return self

    def processor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``agent.sensors.seismic.SeismicConfig``."""
        return self.model_dump()


class DeviceConfig(_Section):
    """Microcontroller heartbeat expectations."""

    heartbeat_period_s: float = Field(
        default=60.0, gt=0, description="Seconds between HEARTBEAT frames (completeness of device.*)."
    )
    max_skew_s: float = Field(
        default=2.0,
        gt=0,
        description="Seismic block timing may differ this much from the receive time before it is "
        "re-anchored to the receive time (counted); a device clock off by more is reported as not ok.",
    )


class CaptureConfig(_Section):
    """Raw byte capture of every port (for replay and for bug reports)."""

    enabled: bool = Field(default=False, description="Record raw bytes of every enabled port.")
    dir: Path = Field(
        default=Path("/var/lib/lews-agent/capture"),
        description="Directory the capture files go to (one file per port).",
    )


class SensorsConfig(_Section):
    """Everything the sensing side needs: ports and the per-sensor parameters."""

    ports: list[SerialPortConfig] = Field(
        default_factory=list, description="Serial ports to read (one reader thread each)."
    )
    gnss: GnssConfig = Field(default_factory=GnssConfig, description="GNSS reference and gating.")
    rain: RainConfig = Field(default_factory=RainConfig, description="Rain gauge.")
    seismic: SeismicConfig = Field(default_factory=SeismicConfig, description="Geophone and trigger.")
    device: DeviceConfig = Field(default_factory=DeviceConfig, description="Microcontroller heartbeat.")
    capture: CaptureConfig = Field(default_factory=CaptureConfig, description="Raw byte capture.")
    reopen_backoff_s: tuple[float, float] = Field(
        default=(0.5, 30.0),
        description="First and longest wait (s) between attempts to reopen a vanished port.",
    )
    max_sample_lag_s: float = Field(
        default=3600.0,
        gt=0,
        description="Samples stamped more than this before the time their bytes were read are dropped "
        "(counted): a receiver replaying old epochs, a wrong device clock.",
    )
    max_sample_lead_s: float = Field(
        default=300.0, gt=0, description="Samples stamped more than this after their read time are dropped."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> SensorsConfig:
        names = [p.name for p in self.ports]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"serial port names must be unique, repeated: {dupes}")
        if self.gnss.reference is None and any(p.kind == "gnss" for p in self.enabled_ports()):
            raise ValueError(
                "a gnss port is enabled but sensors.gnss.reference is not set: "
                "add [sensors.gnss.reference] lat/lon/h_m of the surveyed reference point"
            )
        return self

    def enabled_ports(self) -> list[SerialPortConfig]:
        return [p for p in self.ports if p.enabled]
