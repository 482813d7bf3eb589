"""The warning engine: per-source rules -> published level with hysteresis, hold, validity and cooldown,
and the alert lifecycle events. One entry for the daemon: :meth:`WarningEngine.evaluate`.

Invariant: whenever the wire source says tripped, the published level is 3 in that same evaluation
(no hold, cooldown or disagreement can delay, lower or mask it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.compat import UTC
from agent.errors import AlertStateError
from agent.warning.disagreement import Disagreement, find_disagreement
from agent.warning.events import AlertEvent, EventKind, Explanation, order_sources, summarize
from agent.warning.inputs import Snapshot, WireState
from agent.warning.kinematics import inverse_velocity_rule, velocity_rule
from agent.warning.levels import Level, SourceLevel, no_data
from agent.warning.rainfall import rainfall_rule
from agent.warning.rules import forecast_rule, seismic_rule, spatial_rule, wire_rule
from agent.warning.settings import WarningSettings
from agent.warning.state import AlertState

log = logging.getLogger(__name__)

# A clock step backwards larger than this (s) is counted and logged.
CLOCK_BACKWARDS_TOLERANCE_S = 1.0


def _guarded(source: str, rule: Callable[[], SourceLevel]) -> SourceLevel:
    """Run one rule; a bug or unexpected input in it gives NO_DATA with ``rule_error``, never a crash."""
    try:
        return rule()
    except Exception as exc:  # one broken rule must not stop the others (above all, the wire)
        log.exception("warning rule %s failed", source)
        return no_data(source, f"rule error: {exc!r}", rule_error=True)


def _wire_fallback(snap: Snapshot, cfg: WarningSettings, now: float) -> SourceLevel:
    """The wire rule, and if it fails on a reading that still says tripped (1), level 3 anyway."""
    result = _guarded("wire", lambda: wire_rule(snap.wire, now, cfg.wire))
    raw = getattr(snap.wire, "state", None)
    if result.has_data or raw is None or raw != WireState.TRIPPED:
        return result
    reason = f"wire alarm tripped (raw reading; {result.reason})"
    evidence = {"state": "tripped", "rule_error": True, "raw_state": repr(raw)}
    return SourceLevel("wire", Level.WARNING, evidence, None, Level.WARNING, reason=reason)


def evaluate_sources(snap: Snapshot, now: float, cfg: WarningSettings) -> dict[str, SourceLevel]:
    """Pure: every per-source rule on one snapshot (each guarded, see :func:`_guarded`)."""
    band = cfg.alert.hysteresis_band
    return {
        "wire": _wire_fallback(snap, cfg, now),
        "forecast": _guarded("forecast", lambda: forecast_rule(snap.forecast, now, cfg.forecast, band)),
        "velocity": _guarded("velocity", lambda: velocity_rule(snap.displacement, now, cfg.velocity, band)),
        "inverse_velocity": _guarded(
            "inverse_velocity",
            lambda: inverse_velocity_rule(snap.displacement, now, cfg.inverse_velocity, band),
        ),
        "rainfall": _guarded("rainfall", lambda: rainfall_rule(snap.rain, now, cfg.rainfall, band)),
        "seismic": _guarded("seismic", lambda: seismic_rule(snap.seismic, now, cfg.seismic, band)),
        "spatial": _guarded("spatial", lambda: spatial_rule(snap.spatial, now, cfg.spatial, band)),
    }


def _flag_change(
    st: AlertState, disagreement: Disagreement | None, sources: dict[str, SourceLevel], wire_tripped: bool
) -> str:
    """The cause of a same-level update: wire trip/reset, disagreement or sensor-fault change ("" if none)."""
    old_kind, old_faults = st.disagreement_kind, st.faults
    parts = []
    if wire_tripped != st.wire_tripped:
        parts.append("wire alarm tripped" if wire_tripped else "wire alarm no longer tripped")
    new_kind = disagreement.kind if disagreement else None
    if new_kind != old_kind:
        parts.append(f"disagreement {new_kind}" if new_kind else f"disagreement {old_kind} cleared")
    faults = sorted(n for n, s in sources.items() if s.fault)
    if faults != old_faults:
        parts.append(f"sensor fault on {', '.join(faults)}" if faults else "sensor fault cleared")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """What one evaluation publishes."""

    published_level: Level
    source_levels: dict[str, SourceLevel]
    events: list[AlertEvent]
    disagreement: Disagreement | None
    alert_id: str | None
    explanation: Explanation
    deferred_by_cooldown: bool = False

    @property
    def wire_tripped(self) -> bool:
        wire = self.source_levels.get("wire")
        return wire is not None and wire.evidence.get("state") == "tripped"

    def to_dict(self) -> dict[str, Any]:
        return {
            "published_level": int(self.published_level),
            "alert_id": self.alert_id,
            "deferred_by_cooldown": self.deferred_by_cooldown,
            "explanation": self.explanation.to_dict(),
            "events": [e.to_dict() for e in self.events],
        }


class WarningEngine:
    """Stateful wrapper around the pure rules; persist ``state`` (``state.to_json()``) after every call."""

    def __init__(self, settings: WarningSettings, site: str, state: AlertState | None = None) -> None:
        self.settings = settings
        self.site = site
        self._cfg = settings.for_site(site)
        if state is not None and state.site != site:
            raise AlertStateError(
                f"alert state belongs to site {state.site!r}, not {site!r}",
                fix="point the daemon at this site's own state file",
            )
        self.state = state if state is not None else AlertState(site=site)

    @classmethod
    def from_json(cls, settings: WarningSettings, site: str, text: str) -> WarningEngine:
        return cls(settings, site, AlertState.from_json(text))

    def _count(self, name: str) -> None:
        self.state.counters[name] = self.state.counters.get(name, 0) + 1

    def _new_alert_id(self, now: float) -> str:
        self.state.alert_counter += 1
        stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.site}-{stamp}-{self.state.alert_counter}"

    def _event(
        self,
        kind: EventKind,
        now: float,
        level: Level,
        previous: Level,
        explanation: Explanation,
        *,
        acknowledged_by: str | None = None,
        note: str = "",
    ) -> AlertEvent:
        st = self.state
        if st.alert_id is None:
            raise AlertStateError(
                "no active alert for an event", fix="this is a bug in the engine; report it"
            )
        st.seq += 1
        event = AlertEvent(
            kind=kind,
            event_id=f"{st.alert_id}.{st.seq}",  # no "/", "+" or "#": safe in MQTT topics and file names
            alert_id=st.alert_id,
            seq=st.seq,
            prev_event_id=None if kind == "trigger" else st.last_event_id,
            time=now,
            site=self.site,
            level=level,
            previous_level=previous,
            explanation=explanation,
            acknowledged_by=acknowledged_by,
            note=note,
        )
        st.last_event_id = event.event_id
        return event

    def evaluate(self, snapshot: Snapshot, now: float) -> EvaluationResult:
        """Run every rule on ``snapshot`` at ``now`` and advance the alert state machine."""
        if snapshot.site != self.site:
            raise AlertStateError(
                f"snapshot is for site {snapshot.site!r}, engine for {self.site!r}",
                fix="use one engine per site",
            )
        if not math.isfinite(now):
            raise AlertStateError(f"evaluation time {now!r} is not a finite epoch", fix="pass time.time()")
        cfg = self._cfg
        st = self.state
        if st.last_eval is not None and now < st.last_eval - CLOCK_BACKWARDS_TOLERANCE_S:
            self._count("clock_backwards")
            log.warning("clock went back %.0f s; holding levels until it passes the last evaluation",
                        st.last_eval - now)  # fmt: skip
        sources = evaluate_sources(snapshot, now, cfg)
        for s in sources.values():
            if s.evidence.get("rule_error"):
                self._count("rule_errors")
        disagreement = find_disagreement(sources, cfg.disagreement)
        data = [s for s in sources.values() if s.has_data]
        target = max((s.level for s in data), default=Level.NORMAL)
        support = max((s.holding_level for s in data), default=Level.NORMAL)
        wire_tripped = sources["wire"].evidence.get("state") == "tripped"
        cur = st.level
        new, cause, deferred = cur, "", False
        since = st.level_since if st.level_since is not None else now
        if cur > Level.NORMAL and support >= cur:
            st.last_confirmed = now if st.last_confirmed is None else max(st.last_confirmed, now)
            st.contributing = [s.source for s in data if s.holding_level >= cur]
        if wire_tripped and cur < Level.WARNING:
            new, cause = Level.WARNING, "wire alarm tripped"
        elif target > cur:
            in_cooldown = cur == Level.NORMAL and st.cooldown_until is not None and now < st.cooldown_until
            if in_cooldown and target < cfg.alert.cooldown_bypass_level:
                deferred = True
                self._count("deferred_by_cooldown")
            else:
                drivers = ", ".join(s.source for s in data if s.level >= target)
                new, cause = target, f"raised by {drivers}"
        elif cur > Level.NORMAL and support < cur and not (wire_tripped and cur == Level.WARNING):
            held = now - since
            waiting = [n for n in st.contributing if n not in sources or not sources[n].has_data]
            confirmed_at = st.last_confirmed if st.last_confirmed is not None else since
            if held < cfg.alert.min_hold_s.for_level(cur):
                pass  # minimum hold: keep the level
            elif not waiting:
                new = support
                cause = (
                    f"evidence fell below the hysteresis band of level {int(cur)} after {held / 3600:.1f} h"
                )
            elif now - confirmed_at >= cfg.alert.validity_s.for_level(cur) and not data:
                # Every source is silent: nothing says the danger is over. Hold the level (the
                # explanation lists the sources without data) instead of announcing "normal".
                self._count("held_without_any_data")
            elif now - confirmed_at >= cfg.alert.validity_s.for_level(cur):
                new = support
                age_h = (now - confirmed_at) / 3600
                cause = (
                    f"level {int(cur)} expired: not re-confirmed for {age_h:.1f} h "
                    f"({', '.join(waiting)} without data)"
                )
        if new == cur and st.active and not cause:
            cause = _flag_change(st, disagreement, sources, wire_tripped)
        ordered = order_sources(sources)
        summary = summarize(self.site, new, ordered, disagreement, cause)
        explanation = Explanation(summary, cause, new, ordered, disagreement)
        events = self._transition(cur, new, now, explanation, sources, disagreement, wire_tripped)
        st.last_eval = now if st.last_eval is None else max(st.last_eval, now)
        st.last_sources = list(ordered)
        return EvaluationResult(new, sources, events, disagreement, st.alert_id, explanation, deferred)

    def _transition(
        self,
        cur: Level,
        new: Level,
        now: float,
        explanation: Explanation,
        sources: dict[str, SourceLevel],
        disagreement: Disagreement | None,
        wire_tripped: bool,
    ) -> list[AlertEvent]:
        st = self.state
        faults = sorted(n for n, s in sources.items() if s.fault)
        dis_kind = disagreement.kind if disagreement else None
        events: list[AlertEvent] = []
        if new != cur:
            if cur == Level.NORMAL:
                st.alert_id = self._new_alert_id(now)
                st.alert_started = now
                events.append(self._event("trigger", now, new, cur, explanation))
            elif new == Level.NORMAL:
                events.append(self._event("resolve", now, new, cur, explanation))
                st.alert_id = None
                st.alert_started = None
                st.cooldown_until = now + self._cfg.alert.cooldown_s
            else:
                events.append(self._event("update", now, new, cur, explanation))
            if new > cur:
                st.acknowledged_by = st.acknowledged_at = None  # new information needs a new acknowledgement
            st.level = new
            st.level_since = now
            st.last_confirmed = now
            st.contributing = explanation.contributing
            if new == Level.NORMAL:
                st.acknowledged_by = st.acknowledged_at = None
        elif st.active and (
            dis_kind != st.disagreement_kind or faults != st.faults or wire_tripped != st.wire_tripped
        ):
            events.append(self._event("update", now, new, cur, explanation))
        st.disagreement_kind = dis_kind
        st.wire_tripped = wire_tripped
        st.faults = faults
        return events

    def acknowledge(self, by: str, now: float, note: str = "", alert_id: str | None = None) -> AlertEvent:
        """Operator acknowledgement of the active alert (an authenticated ``cmd/`` message in the daemon).

        It changes no level; a later raise clears it. Raises :class:`AlertStateError` when there is no
        active alert or ``alert_id`` names another one.
        """
        st = self.state
        if st.alert_id is None:
            raise AlertStateError(
                f"no active alert to acknowledge at {self.site}", fix="check the retained alert topic first"
            )
        if alert_id is not None and alert_id != st.alert_id:
            raise AlertStateError(
                f"alert {alert_id!r} is not the active alert ({st.alert_id!r}) at {self.site}",
                fix="acknowledge the active alert id from the retained alert topic",
            )
        if not by.strip():
            raise AlertStateError("acknowledgement without an operator name", fix="pass who acknowledges")
        ordered = tuple(st.last_sources)
        cause = f"acknowledged by {by}" + (f": {note}" if note else "")
        explanation = Explanation(
            summarize(self.site, st.level, ordered, None, cause), cause, st.level, ordered
        )
        st.acknowledged_by, st.acknowledged_at = by, now
        return self._event("acknowledge", now, st.level, st.level, explanation, acknowledged_by=by, note=note)
