"""The alert state machine's persistent state, serialisable to JSON so the daemon can resume after a
restart without re-triggering an alert or losing a resolve."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AlertStateError
from agent.warning.levels import Level, SourceLevel, iso_utc, parse_iso_utc

STATE_VERSION = 1

_TIME_FIELDS = (
    "alert_started",
    "level_since",
    "last_confirmed",
    "cooldown_until",
    "acknowledged_at",
    "last_eval",
)


@dataclass
class AlertState:
    """Everything the engine must remember between evaluations (and restarts)."""

    site: str
    level: Level = Level.NORMAL
    alert_id: str | None = None
    alert_started: float | None = None
    level_since: float | None = None
    last_confirmed: float | None = None
    last_event_id: str | None = None
    seq: int = 0  # events emitted so far, over all alerts
    alert_counter: int = 0  # alerts started so far
    cooldown_until: float | None = None
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    disagreement_kind: str | None = None
    wire_tripped: bool = False
    faults: list[str] = field(default_factory=list)
    contributing: list[str] = field(default_factory=list)
    last_eval: float | None = None
    last_sources: list[SourceLevel] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.alert_id is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": STATE_VERSION,
            "site": self.site,
            "level": int(self.level),
            "alert_id": self.alert_id,
            "last_event_id": self.last_event_id,
            "seq": self.seq,
            "alert_counter": self.alert_counter,
            "acknowledged_by": self.acknowledged_by,
            "disagreement_kind": self.disagreement_kind,
            "wire_tripped": self.wire_tripped,
            "faults": list(self.faults),
            "contributing": list(self.contributing),
            "last_sources": [s.to_dict() for s in self.last_sources],
            "counters": dict(self.counters),
        }
        # Times exactly: ISO for people plus the float for a lossless round trip.
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            d[name] = iso_utc(value)
            d[f"{name}_t"] = value
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlertState:
        if d.get("version") != STATE_VERSION:
            raise AlertStateError(
                f"alert state version {d.get('version')!r} is not {STATE_VERSION}",
                fix="delete the state file only after checking the current alert by hand; the engine then "
                "starts at level 0 and re-triggers from live evidence",
            )
        try:
            times = {
                n: (float(d[f"{n}_t"]) if d.get(f"{n}_t") is not None else parse_iso_utc(d.get(n)))
                for n in _TIME_FIELDS
            }
            level = Level(int(d["level"]))
            if level is Level.NO_DATA:
                raise ValueError("a published level cannot be no_data")
            return cls(
                site=str(d["site"]),
                level=level,
                alert_id=d.get("alert_id"),
                last_event_id=d.get("last_event_id"),
                seq=int(d["seq"]),
                alert_counter=int(d["alert_counter"]),
                acknowledged_by=d.get("acknowledged_by"),
                disagreement_kind=d.get("disagreement_kind"),
                wire_tripped=bool(d.get("wire_tripped", False)),
                faults=[str(x) for x in d.get("faults", [])],
                contributing=[str(x) for x in d.get("contributing", [])],
                last_sources=[SourceLevel.from_dict(s) for s in d.get("last_sources", [])],
                counters={str(k): int(v) for k, v in dict(d.get("counters", {})).items()},
                **times,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AlertStateError(
                f"alert state is malformed: {exc!r}",
                fix="restore the state file from the daemon's state directory backup, or inspect it by hand",
            ) from exc

    @classmethod
    def from_json(cls, text: str) -> AlertState:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AlertStateError(
                f"alert state is not JSON: {exc}", fix="restore the state file or inspect it by hand"
            ) from exc
        if not isinstance(data, dict):
            raise AlertStateError("alert state is not a JSON object", fix="restore the state file")
        return cls.from_dict(data)
