"""Alert levels, the per-source result type and the grading helper every rule shares.

Levels follow ../shared/DESIGN.md: 0 normal, 1 advisory, 2 watch, 3 warning (evacuate), plus a
per-source "no data" state, modelled here as ``Level.NO_DATA`` (-1) so that ``max`` over sources
ignores it naturally. Published levels are never ``NO_DATA``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

import numpy as np

from agent.compat import UTC


class Level(IntEnum):
    """A graded alert level. ``NO_DATA`` exists only per source, never as a published level."""

    NO_DATA = -1
    NORMAL = 0
    ADVISORY = 1
    WATCH = 2
    WARNING = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# The sources the engine knows, in the order explanations list them.
SOURCES: tuple[str, ...] = (
    "wire",
    "forecast",
    "velocity",
    "inverse_velocity",
    "rainfall",
    "seismic",
    "spatial",
)


def iso_utc(t: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with ``Z`` (millisecond precision); None stays None."""
    if t is None or not math.isfinite(t):
        return None
    try:
        stamp = datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None  # beyond the calendar (e.g. a failure time extrapolated to infinity)
    return stamp.replace("+00:00", "Z")


def parse_iso_utc(text: str | None) -> float | None:
    """Inverse of :func:`iso_utc`."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def json_safe(value: Any) -> Any:
    """Make evidence JSON-serialisable: non-finite floats -> None, tuples -> lists, numpy scalars -> float."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):  # numpy scalar
        return json_safe(value.item())
    return str(value)


@dataclass(frozen=True, slots=True)
class SourceLevel:
    """What one source says at one time.

    ``level`` is graded against the raise thresholds; ``release_level`` against the hysteresis band
    (thresholds moved by the band toward "safer"), so ``release_level >= level``: the aggregator keeps a
    published level while some source's ``release_level`` still reaches it. ``fault`` flags a sensor
    fault (for example a wire open circuit) that the level already accounts for.
    """

    source: str
    level: Level
    evidence: dict[str, Any]
    valid_until: float | None
    release_level: Level | None = None
    fault: bool = False
    completeness: float | None = None
    model: str | None = None  # "name@version" for model-backed sources
    data_time: float | None = None
    reason: str = ""

    @property
    def holding_level(self) -> Level:
        """The level this source still supports within the hysteresis band."""
        return self.level if self.release_level is None else max(self.level, self.release_level)

    @property
    def has_data(self) -> bool:
        return self.level is not Level.NO_DATA

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "level": int(self.level),
            "level_name": self.level.label,
            "release_level": int(self.holding_level),
            "fault": self.fault,
            "reason": self.reason,
            "completeness": json_safe(self.completeness),
            "model": self.model,
            "data_time": iso_utc(self.data_time),
            "valid_until": iso_utc(self.valid_until),
            "evidence": json_safe(self.evidence),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SourceLevel:
        level = Level(int(d["level"]))
        return cls(
            source=str(d["source"]),
            level=level,
            evidence=dict(d.get("evidence") or {}),
            valid_until=parse_iso_utc(d.get("valid_until")),
            release_level=Level(int(d.get("release_level", int(level)))),
            fault=bool(d.get("fault", False)),
            completeness=d.get("completeness"),
            model=d.get("model"),
            data_time=parse_iso_utc(d.get("data_time")),
            reason=str(d.get("reason", "")),
        )


def no_data(source: str, reason: str, **evidence: Any) -> SourceLevel:
    """A NO_DATA result with the reason in both ``reason`` and the evidence."""
    return SourceLevel(
        source=source,
        level=Level.NO_DATA,
        evidence={"reason": reason, **evidence},
        valid_until=None,
        release_level=Level.NO_DATA,
        reason=reason,
    )


@dataclass(frozen=True, slots=True)
class Grade:
    """Result of grading one value against per-level thresholds."""

    level: Level
    release_level: Level
    thresholds: dict[str, float | None] = field(default_factory=dict)


def grade(
    value: float,
    thresholds: Sequence[float | None],
    *,
    band: float,
    higher_is_worse: bool = True,
) -> Grade:
    """Grade ``value`` against thresholds for levels 1, 2, 3 (``None`` disables a level).

    A level is reached when the value is at or beyond its threshold (``>=`` when higher is worse,
    ``<=`` otherwise). ``release_level`` uses thresholds moved by the fractional ``band`` toward safe
    (``T*(1-band)`` or ``T*(1+band)``) so a value just under a threshold still holds the level.
    """
    if len(thresholds) != 3:
        raise ValueError(f"grade() needs 3 thresholds (levels 1..3), got {len(thresholds)}")
    level = Level.NORMAL
    release = Level.NORMAL
    for k, thr in enumerate(thresholds, start=1):
        if thr is None:
            continue
        if higher_is_worse:
            hit, hold = value >= thr, value >= thr * (1.0 - band)
        else:
            hit, hold = value <= thr, value <= thr * (1.0 + band)
        if hit:
            level = Level(k)
        if hold:
            release = Level(k)
    names = ("advisory", "watch", "warning")
    return Grade(level, max(level, release), {n: t for n, t in zip(names, thresholds, strict=True)})
