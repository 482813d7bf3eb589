"""Disagreement between the wire alarm and the other evidence: a published flag, never a level change.

Two cases (docs/warning-engine.md):
- ``wire_tripped_no_motion``: the wire is tripped but fresh GNSS shows no motion (velocity below
  ``no_motion_mm_day``) and no motion-based source is above normal: a possible cut or false trip.
- ``motion_wire_intact``: the wire reads intact (fresh) while a motion source (velocity, inverse
  velocity or forecast) is at ``strong_motion_level`` or above: the wire may be stuck, bypassed or
  anchored outside the moving mass.
The wire's level is untouched either way; the engine only reports the flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.warning.levels import Level, SourceLevel, json_safe
from agent.warning.settings import DisagreementSettings

MOTION_SOURCES: tuple[str, ...] = ("velocity", "inverse_velocity", "forecast")


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A published disagreement flag with its evidence."""

    kind: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "summary": self.summary, "evidence": json_safe(self.evidence)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Disagreement:
        return cls(str(d["kind"]), str(d["summary"]), dict(d.get("evidence") or {}))


def find_disagreement(sources: Mapping[str, SourceLevel], cfg: DisagreementSettings) -> Disagreement | None:
    """Pure: compare the wire's source level with the motion sources."""
    wire = sources.get("wire")
    if wire is None or not wire.has_data:
        return None
    state = wire.evidence.get("state")
    motion = {n: sources[n] for n in MOTION_SOURCES if n in sources and sources[n].has_data}
    levels = {n: int(s.level) for n, s in motion.items()}
    if state == "tripped":
        vel = motion.get("velocity")
        if vel is None:
            return None  # no fresh GNSS: cannot tell whether the ground moved
        v = float(vel.evidence.get("velocity_mm_day", float("nan")))
        if v < cfg.no_motion_mm_day and all(lv == Level.NORMAL for lv in levels.values()):
            return Disagreement(
                "wire_tripped_no_motion",
                f"wire tripped but GNSS shows no motion ({v:.2f} mm/day < {cfg.no_motion_mm_day:g}): "
                "possible cut wire or false trip; the warning stands until checked on site",
                {"velocity_mm_day": v, "no_motion_mm_day": cfg.no_motion_mm_day, "motion_levels": levels},
            )
        return None
    if state == "intact":
        strong = {n: lv for n, lv in levels.items() if lv >= cfg.strong_motion_level}
        if strong:
            names = ", ".join(f"{n} level {lv}" for n, lv in sorted(strong.items()))
            return Disagreement(
                "motion_wire_intact",
                f"strong motion ({names}) while the wire alarm reads intact: check the wire on site",
                {
                    "strong_sources": strong,
                    "strong_motion_level": cfg.strong_motion_level,
                    "motion_levels": levels,
                },
            )
    return None
