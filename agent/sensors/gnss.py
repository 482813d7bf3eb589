"""GNSS ingestion: bytes -> frames (pyubx2 / pynmeagps) -> epochs -> quality gate -> local e/n/u mm.

``GnssProcessor.feed(bytes)`` returns ``Sample``s on ``gnss.e_mm``, ``gnss.n_mm``, ``gnss.u_mm``,
``gnss.h_acc_mm``, ``gnss.num_sv`` for every epoch that passes the gate, and counts every epoch it
rejects by the first rule it fails (``GATE_RULES`` order). ``solve_steps`` is the robust per-step
solution (median, scaled MAD, IQR, count, fraction gated) used by ``agent inspect`` and the tests.
See docs/sensors.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pymap3d

from agent.errors import ConfigError
from agent.features.samples import Sample
from agent.sensors.gnss_epochs import CARRIER_NAMES, Epoch, EpochAssembler, TimeContext
from agent.sensors.gnss_frames import GnssFramer

MAD_TO_SIGMA = 1.4826  # scaled MAD estimates a Gaussian standard deviation
POSITION_SOURCES = ("NAV-RELPOSNED", "NAV-PVT", "GNS", "GGA", "NAV-SOL")
# What the framer must parse fully for the processor; everything else is counted by header only.
PARSED_TYPES = frozenset(
    {"NAV-SOL", "NAV-PVT", "NAV-HPPOSLLH", "NAV-RELPOSNED", "NAV-TIMEUTC", "GGA", "GNS", "GST", "RMC", "ZDA"}
)


@dataclass(frozen=True)
class GateConfig:
    """Which epochs are good enough. Unknown accuracy/HDOP (NaN) passes only when ``accept_unknown``."""

    fix_types: frozenset[int] = frozenset({3, 4})  # UBX fixType: 3 = 3D, 4 = GNSS + dead reckoning
    min_carrier: str = "fixed"  # none | float | fixed (RTK carrier-phase solution)
    min_num_sv: int = 5
    max_h_acc_mm: float = 50.0
    max_hdop: float = 5.0
    require_fix_ok: bool = True
    accept_unknown: bool = True

    def __post_init__(self) -> None:
        if self.min_carrier not in CARRIER_NAMES:
            raise ConfigError(
                f"gnss gate min_carrier {self.min_carrier!r} is not one of {sorted(CARRIER_NAMES)}",
                fix="set gnss.gate.min_carrier to none, float or fixed",
            )
        if self.min_num_sv < 0 or not self.max_h_acc_mm > 0 or not self.max_hdop > 0:
            raise ConfigError(
                "gnss gate limits must be positive (min_num_sv >= 0, max_h_acc_mm > 0, max_hdop > 0)",
                fix="correct gnss.gate in the configuration",
            )


# Presets as data: `agent inspect --gate NAME` and the configuration can name one.
GATE_PRESETS: dict[str, GateConfig] = {
    "rtk-fixed": GateConfig(),
    "rtk-float": GateConfig(min_carrier="float", max_h_acc_mm=200.0),
    "standalone": GateConfig(min_carrier="none", min_num_sv=4, max_h_acc_mm=10_000.0, max_hdop=10.0),
    "none": GateConfig(
        fix_types=frozenset(range(6)),
        min_carrier="none",
        min_num_sv=0,
        max_h_acc_mm=math.inf,
        max_hdop=math.inf,
        require_fix_ok=False,
    ),
}


def _unknown_ok(value: float, limit_ok: bool, cfg: GateConfig) -> bool:
    return cfg.accept_unknown if math.isnan(value) else limit_ok


# Gate rules in evaluation order: (reason counted when it fails, predicate that must hold).
GATE_RULES: tuple[tuple[str, Callable[[Epoch, GateConfig], bool]], ...] = (
    ("fix_not_ok", lambda e, c: e.fix_ok or not c.require_fix_ok),
    ("fix_type", lambda e, c: e.fix_type in c.fix_types),
    ("relpos_invalid", lambda e, c: e.relpos_valid),
    ("carrier", lambda e, c: e.carrier >= CARRIER_NAMES[c.min_carrier]),
    ("num_sv", lambda e, c: _unknown_ok(e.num_sv, e.num_sv >= c.min_num_sv, c)),
    ("h_acc", lambda e, c: _unknown_ok(e.h_acc_mm, e.h_acc_mm <= c.max_h_acc_mm, c)),
    ("hdop", lambda e, c: _unknown_ok(e.hdop, e.hdop <= c.max_hdop, c)),
    (
        "no_position",
        lambda e, c: (
            (e.rel_enu_mm is not None and all(map(math.isfinite, e.rel_enu_mm)))
            or all(map(math.isfinite, (e.lat, e.lon, e.h_m)))
        ),
    ),
)
GATE_REASONS = tuple(name for name, _ in GATE_RULES)


def gate(epoch: Epoch, cfg: GateConfig) -> str | None:
    """Pure rule: ``None`` when the epoch passes, else the name of the first rule it fails."""
    for name, ok in GATE_RULES:
        if not ok(epoch, cfg):
            return name
    return None


@dataclass(frozen=True)
class Reference:
    """Local frame origin: WGS84 latitude/longitude (deg) and ellipsoidal height (m)."""

    lat: float
    lon: float
    h_m: float

    def __post_init__(self) -> None:
        if not (-90 <= self.lat <= 90 and -180 <= self.lon <= 360 and math.isfinite(self.h_m)):
            raise ConfigError(
                f"gnss reference ({self.lat}, {self.lon}, {self.h_m}) is not a valid lat/lon/height",
                fix="set gnss.reference to the surveyed antenna position (deg, deg, ellipsoidal m)",
            )


def to_enu_mm(epoch: Epoch, ref: Reference, relpos_origin_mm: Sequence[float]) -> tuple[float, float, float]:
    """Pure: east/north/up in mm of the epoch relative to the reference (RELPOSNED: to its origin)."""
    if epoch.rel_enu_mm is not None:
        e, n, u = epoch.rel_enu_mm
        return e - relpos_origin_mm[0], n - relpos_origin_mm[1], u - relpos_origin_mm[2]
    e_m, n_m, u_m = pymap3d.geodetic2enu(epoch.lat, epoch.lon, epoch.h_m, ref.lat, ref.lon, ref.h_m)
    return float(e_m) * 1000.0, float(n_m) * 1000.0, float(u_m) * 1000.0


@dataclass(frozen=True)
class GnssConfig:
    reference: Reference
    gate: GateConfig = field(default_factory=GateConfig)
    sources: tuple[str, ...] = ("NAV-PVT", "GNS", "GGA")  # priority when one epoch has several
    relpos_origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # reference as seen from the base

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in POSITION_SOURCES]
        if bad or not self.sources:
            raise ConfigError(
                f"gnss sources {list(self.sources)} contain unknown {bad} or are empty",
                fix=f"choose gnss.sources from {list(POSITION_SOURCES)}",
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> GnssConfig:
        """Build from a configuration mapping ({reference: {lat, lon, h_m}, gate: {...} | "preset"})."""
        try:
            ref = Reference(**dict(data["reference"]))
            gate_in = data.get("gate", "rtk-fixed")
            if isinstance(gate_in, str):
                if gate_in not in GATE_PRESETS:
                    raise ConfigError(
                        f"gnss gate preset {gate_in!r} is unknown",
                        fix=f"use one of {sorted(GATE_PRESETS)} or a mapping of gate fields",
                    )
                gate_cfg = GATE_PRESETS[gate_in]
            else:
                known = {f.name for f in fields(GateConfig)}
                unknown = set(gate_in) - known
                if unknown:
                    raise ConfigError(
                        f"gnss.gate has unknown keys {sorted(unknown)}", fix=f"use {sorted(known)}"
                    )
                g = dict(gate_in)
                if "fix_types" in g:
                    g["fix_types"] = frozenset(int(x) for x in g["fix_types"])
                gate_cfg = GateConfig(**g)
            sources = tuple(data.get("sources", ("NAV-PVT", "GNS", "GGA")))
            origin = tuple(float(x) for x in data.get("relpos_origin_mm", (0.0, 0.0, 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"gnss configuration is malformed: {exc}",
                fix="gnss needs reference: {lat, lon, h_m}; optional gate, sources, relpos_origin_mm",
            ) from exc
        if len(origin) != 3:
            raise ConfigError("gnss.relpos_origin_mm must have 3 numbers (e, n, u)", fix="e.g. [0, 0, 0]")
        return cls(
            reference=ref, gate=gate_cfg, sources=sources, relpos_origin_mm=(origin[0], origin[1], origin[2])
        )


@dataclass(frozen=True, slots=True)
class GatedEpoch:
    t: float
    passed: bool
    reason: str | None
    source: str
    e_mm: float
    n_mm: float
    u_mm: float
    h_acc_mm: float
    num_sv: float
    carrier: int
    fix_type: int


class GnssProcessor:
    """One receiver stream: feed bytes, get samples; counters say what was dropped and why."""

    def __init__(
        self, cfg: GnssConfig, *, clock: Callable[[], float] | None = None, keep_epochs: bool = False
    ):
        self.cfg = cfg
        self.framer = GnssFramer(PARSED_TYPES)
        self.assembler = EpochAssembler(sources=cfg.sources, ctx=TimeContext(clock=clock))
        self.rejected: Counter[str] = Counter(dict.fromkeys((*GATE_REASONS, "non_finite"), 0))
        self.epochs_total = 0
        self.epochs_gated = 0
        self.keep_epochs = keep_epochs
        self.epochs: list[GatedEpoch] = []

    def feed(self, data: bytes) -> list[Sample]:
        return self._frames(self.framer.feed(data))

    def finish(self) -> list[Sample]:
        out = self._frames(self.framer.finish())
        for epoch in self.assembler.finish():
            out.extend(self._epoch(epoch))
        return out

    def _frames(self, frames: Iterable[Any]) -> list[Sample]:
        out: list[Sample] = []
        for frame in frames:
            if frame.msg is None:
                continue
            for epoch in self.assembler.add_message(frame.identity, frame.msg):
                out.extend(self._epoch(epoch))
        return out

    def _epoch(self, epoch: Epoch) -> list[Sample]:
        self.epochs_total += 1
        reason = gate(epoch, self.cfg.gate)
        if reason is None:
            e, n, u = to_enu_mm(epoch, self.cfg.reference, self.cfg.relpos_origin_mm)
            extras = (epoch.h_acc_mm, epoch.num_sv)  # NaN there means unknown; inf is garbage
            if not all(map(math.isfinite, (e, n, u))) or any(map(math.isinf, extras)):
                # a checksum-valid frame with absurd numbers (height 1e306 m) overflows to +-inf in
                # the ENU conversion: dropped here, counted, before any subscriber sees it
                reason = "non_finite"
                self.rejected[reason] += 1
        else:
            self.rejected[reason] += 1
            e = n = u = math.nan
            if reason != "no_position":
                e, n, u = to_enu_mm(epoch, self.cfg.reference, self.cfg.relpos_origin_mm)
        if self.keep_epochs:
            self.epochs.append(
                GatedEpoch(
                    epoch.t, reason is None, reason, epoch.source, e, n, u,
                    epoch.h_acc_mm, epoch.num_sv, epoch.carrier, epoch.fix_type,
                )
            )  # fmt: skip
        if reason is not None:
            return []
        self.epochs_gated += 1
        out = [
            Sample(epoch.t, "gnss.e_mm", e),
            Sample(epoch.t, "gnss.n_mm", n),
            Sample(epoch.t, "gnss.u_mm", u),
        ]
        if not math.isnan(epoch.h_acc_mm):
            out.append(Sample(epoch.t, "gnss.h_acc_mm", epoch.h_acc_mm))
        if not math.isnan(epoch.num_sv):
            out.append(Sample(epoch.t, "gnss.num_sv", epoch.num_sv))
        return out

    def counters(self) -> dict[str, Any]:
        return {
            **self.framer.counters.as_dict(),
            "epochs": self.epochs_total,
            "epochs_gated": self.epochs_gated,
            "rejected": dict(self.rejected),
            "epoch_drops": dict(self.assembler.drops),
        }


@dataclass(frozen=True)
class StepSolution:
    """Robust solution of one step: medians, spreads (scaled MAD and IQR) in mm, counts."""

    t_start: float
    step_s: float
    count: int  # gated epochs
    total: int  # all epochs in the step
    fraction_gated: float  # count / total
    median_mm: tuple[float, float, float]
    mad_mm: tuple[float, float, float]  # 1.4826 * median absolute deviation
    iqr_mm: tuple[float, float, float]


def solve_steps(epochs: Sequence[GatedEpoch], step_s: float, t0: float | None = None) -> list[StepSolution]:
    """Pure: bin epochs into steps of ``step_s`` s (aligned to ``t0`` or the epoch 0) and solve each."""
    if not epochs:
        return []
    if not step_s > 0:
        raise ConfigError(f"gnss step {step_s!r} s is not positive", fix="use a step such as 3600")
    t = np.array([e.t for e in epochs])
    start = math.floor(t.min() / step_s) * step_s if t0 is None else t0
    idx = np.floor((t - start) / step_s).astype(np.int64)
    enu = np.array([[e.e_mm, e.n_mm, e.u_mm] for e in epochs])
    passed = np.array([e.passed for e in epochs])
    out: list[StepSolution] = []
    for k in np.unique(idx):
        sel = idx == k
        good = enu[sel & passed]
        total = int(sel.sum())
        if len(good):
            med = np.median(good, axis=0)
            mad = MAD_TO_SIGMA * np.median(np.abs(good - med), axis=0)
            q75, q25 = np.percentile(good, [75, 25], axis=0)
            iqr = q75 - q25
        else:
            med = mad = iqr = np.full(3, np.nan)
        out.append(
            StepSolution(
                t_start=start + float(k) * step_s,
                step_s=step_s,
                count=len(good),
                total=total,
                fraction_gated=len(good) / total,
                median_mm=(float(med[0]), float(med[1]), float(med[2])),
                mad_mm=(float(mad[0]), float(mad[1]), float(mad[2])),
                iqr_mm=(float(iqr[0]), float(iqr[1]), float(iqr[2])),
            )
        )
    return out
