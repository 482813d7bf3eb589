"""Alert lifecycle events (trigger / update / resolve / acknowledge) and their explanations.

Plain dataclasses with ``to_dict()`` (JSON-serialisable, UTC ISO times); the dict shape is documented
in docs/warning-engine.md for the publisher's JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.warning.disagreement import Disagreement
from agent.warning.levels import SOURCES, Level, SourceLevel, iso_utc, json_safe

EventKind = Literal["trigger", "update", "resolve", "acknowledge"]

LEVEL_WORDS: dict[int, str] = {
    0: "normal",
    1: "advisory",
    2: "watch",
    3: "warning, evacuate",
}


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the published level is what it is: every source with its evidence, and a sentence."""

    summary: str
    cause: str
    published_level: Level
    sources: tuple[SourceLevel, ...]
    disagreement: Disagreement | None = None

    @property
    def contributing(self) -> list[str]:
        if self.published_level <= Level.NORMAL:
            return []
        return [s.source for s in self.sources if s.has_data and s.holding_level >= self.published_level]

    @property
    def no_data(self) -> list[str]:
        return [s.source for s in self.sources if not s.has_data]

    @property
    def faults(self) -> list[str]:
        return [s.source for s in self.sources if s.fault]

    @property
    def model_version(self) -> str | None:
        """The model behind the level: the forecast's ("name@version"), else the risk map's, among the
        contributing sources only; None when the level rests on sources without a model (the wire)."""
        contributing = set(self.contributing)
        models = {s.source: s.model for s in self.sources if s.model and s.source in contributing}
        return models.get("forecast") or models.get("spatial")

    @property
    def overall_completeness(self) -> float | None:
        """The lowest completeness among sources with data that report one (None if none do)."""
        values = [s.completeness for s in self.sources if s.has_data and s.completeness is not None]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "model_version": self.model_version,
            "overall_completeness": json_safe(self.overall_completeness),
            "cause": self.cause,
            "published_level": int(self.published_level),
            "contributing": self.contributing,
            "no_data": self.no_data,
            "faults": self.faults,
            "models": {s.source: s.model for s in self.sources if s.model},
            "completeness": {
                s.source: json_safe(s.completeness) for s in self.sources if s.completeness is not None
            },
            "disagreement": self.disagreement.to_dict() if self.disagreement else None,
            "sources": [s.to_dict() for s in self.sources],
        }


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One lifecycle event. ``prev_event_id`` links to the previous event of the same alert."""

    kind: EventKind
    event_id: str
    alert_id: str
    seq: int
    prev_event_id: str | None
    time: float
    site: str
    level: Level
    previous_level: Level
    explanation: Explanation
    acknowledged_by: str | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "event_id": self.event_id,
            "alert_id": self.alert_id,
            "seq": self.seq,
            "prev_event_id": self.prev_event_id,
            "time": iso_utc(self.time),
            "site": self.site,
            "level": int(self.level),
            "level_name": self.level.label,
            "previous_level": int(self.previous_level),
            "acknowledged_by": self.acknowledged_by,
            "note": self.note,
            "explanation": self.explanation.to_dict(),
        }


def order_sources(sources: Mapping[str, SourceLevel]) -> tuple[SourceLevel, ...]:
    """Sources in the canonical order of :data:`SOURCES`, unknown ones after, by name."""
    known = [sources[n] for n in SOURCES if n in sources]
    rest = [sources[n] for n in sorted(sources) if n not in SOURCES]
    return (*known, *rest)


def summarize(
    site: str,
    level: Level,
    sources: Sequence[SourceLevel],
    disagreement: Disagreement | None,
    cause: str,
) -> str:
    """One human-readable sentence (a few clauses) for people on the ground."""
    lvl = max(int(level), 0)
    parts = [f"Level {lvl} ({LEVEL_WORDS[lvl]}) at {site}" + (f" - {cause}" if cause else "")]
    driving = [s for s in sources if s.has_data and lvl > 0 and s.holding_level >= lvl]
    parts += [f"{s.source.replace('_', ' ').capitalize()}: {s.reason}" for s in driving]
    others = [s for s in sources if s.has_data and s not in driving and s.level > Level.NORMAL]
    if others:
        parts.append("Also raised: " + ", ".join(f"{s.source} level {int(s.level)}" for s in others))
    faults = [s.source for s in sources if s.fault]
    if faults:
        parts.append("Sensor fault: " + ", ".join(faults))
    missing = [s.source for s in sources if not s.has_data]
    if missing:
        parts.append("No data from " + ", ".join(missing))
    if disagreement is not None:
        parts.append("DISAGREEMENT: " + disagreement.summary)
    return ". ".join(p.rstrip(".") for p in parts) + "."
