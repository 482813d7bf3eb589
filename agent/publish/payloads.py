"""Payload builders: versioned JSON documents for every topic in agent/publish/topics.py.

Every payload carries the envelope (schema name + version, a stable ``msg_id`` for de-duplication,
UTC ISO-8601 ``time``, ``site``, ``node``, ``agent_version``, ``historical``) plus its own fields.
Shapes are fixed by the JSON Schemas in agent/schemas/ (docs/mqtt.md). Builders are pure apart
from the clock and the uuid, which are injectable.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agent.compat import UTC
from agent.errors import PublishError

SCHEMA_VERSION = 1
# payload kinds whose shape changed since version 1 (docs/mqtt.md, "Schema versions"): forecast
# (exceedance as a list, horizons), alert and alert_event (expires, sensors, model_version rule)
SCHEMA_VERSIONS: dict[str, int] = {"forecast": 2, "alert": 2, "alert_event": 2}
LEVEL_NAMES: dict[int, str] = {0: "normal", 1: "advisory", 2: "watch", 3: "warning"}
WIRE_STATES: dict[int, str] = {0: "intact", 1: "tripped", 2: "open_circuit", 3: "short"}
EVENT_TYPES = ("trigger", "update", "resolve", "acknowledge")


def iso_z(t: float) -> str:
    """Epoch seconds -> '2026-11-22T09:43:11.123Z' (UTC, millisecond precision)."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_iso_z(text: str) -> float:
    """'...Z' or '+00:00' ISO-8601 -> epoch seconds; naive times are rejected."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no timezone")
    return dt.timestamp()


def clean_json(value: Any, where: str = "payload") -> Any:
    """Make a value JSON-safe: NaN/inf -> null, numpy scalars/arrays -> Python, tuples -> lists."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): clean_json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return clean_json(value.tolist(), where)
    if hasattr(value, "to_dict"):
        return clean_json(value.to_dict(), where)
    raise PublishError(
        f"{where} has a value of type {type(value).__name__} that cannot be published as JSON",
        fix="convert it to a number, string, list or dict before publishing",
    )


def dumps(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def _fraction(value: float | None, what: str) -> float | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if not 0.0 <= float(value) <= 1.0:
        raise PublishError(f"{what} {value} is not a fraction", fix="pass a completeness between 0 and 1")
    return float(value)


@dataclass
class PayloadFactory:
    """Builds the payload dicts of one node. ``clock`` returns epoch seconds; ``new_id`` a unique id."""

    site: str
    node: str
    agent_version: str
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    # source -> the sensors behind it (see ``sensor_identities``); level -> validity (s) for ``expires``
    sensors: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    validity_s: Mapping[int, float] = field(default_factory=dict)

    def _alert_context(self, level: int, explanation: Mapping[str, Any], t: float) -> dict[str, Any]:
        """``expires`` and ``sensors`` of an alert (or alert event) at ``level`` with ``explanation``."""
        validity = self.validity_s.get(int(level))
        expires = iso_z(t + validity) if level > 0 and validity is not None else None
        named = [str(s.get("source")) for s in explanation.get("sources") or [] if isinstance(s, Mapping)]
        return {"expires": expires, "sensors": {n: self.sensors[n] for n in named if n in self.sensors}}

    def envelope(self, schema: str, t: float | None = None) -> dict[str, Any]:
        return {
            "schema": f"lews.{schema}",
            "schema_version": SCHEMA_VERSIONS.get(schema, SCHEMA_VERSION),
            "msg_id": self.new_id(),
            "time": iso_z(self.clock() if t is None else t),
            "site": self.site,
            "node": self.node,
            "agent_version": self.agent_version,
            "historical": False,
        }

    def status(
        self,
        state: str,
        *,
        backend: str,
        started_at: float,
        mode: str = "normal",
        reason: str | None = None,
        outbox: Mapping[str, Any] | None = None,
        t: float | None = None,
    ) -> dict[str, Any]:
        now = self.clock() if t is None else t
        p = self.envelope("status", now)
        p.update(
            state=state,
            backend=backend,
            mode=mode,
            started_at=iso_z(started_at),
            uptime_s=None if state == "offline" else round(max(0.0, now - started_at), 3),
            reason=reason,
        )
        if outbox is not None:
            p["outbox"] = clean_json(dict(outbox), "outbox")
        return p

    def alert(
        self,
        level: int,
        explanation: Mapping[str, Any] | Any,
        *,
        alert_id: str | None,
        acknowledged_by: str | None = None,
        t: float | None = None,
    ) -> dict[str, Any]:
        """The current (retained) alert: the level plus the warning engine's ``Explanation.to_dict()``.

        ``model_version`` and ``completeness`` are lifted from the explanation (docs/warning-engine.md)."""
        exp = clean_json(explanation, "explanation")
        p = self.envelope("alert", t)
        now = self.clock() if t is None else t
        p.update(
            level=_level(level),
            level_name=LEVEL_NAMES[level],
            alert_id=alert_id,
            acknowledged_by=acknowledged_by,
            summary=str(exp.get("summary", "")),
            model_version=exp.get("model_version"),
            completeness=_fraction(exp.get("overall_completeness"), "overall_completeness"),
            explanation=exp,
            **self._alert_context(level, exp, now),
        )
        return p

    def alert_event(self, event: Mapping[str, Any] | Any, t: float | None = None) -> dict[str, Any]:
        """One lifecycle event: the engine's ``AlertEvent.to_dict()`` under ``event``, its key fields
        repeated at the top for filtering. ``time`` is the event's own time."""
        ev = clean_json(event, "event")
        try:
            kind, level, previous = ev["kind"], int(ev["level"]), ev.get("previous_level")
            exp = ev["explanation"]
            event_t = parse_iso_z(ev["time"]) if t is None else t
        except (KeyError, TypeError, ValueError) as exc:
            raise PublishError(
                f"alert event lacks {exc} or has a bad value; it is not an AlertEvent.to_dict()",
                fix="pass the warning engine's AlertEvent (or its to_dict())",
            ) from exc
        if kind not in EVENT_TYPES:
            raise PublishError(f"alert event type {kind!r} is unknown", fix=f"use one of {EVENT_TYPES}")
        p = self.envelope("alert_event", event_t)
        p.update(
            event_type=kind,
            alert_id=ev["alert_id"],
            event_id=ev["event_id"],
            seq=ev["seq"],
            prev_event_id=ev.get("prev_event_id"),
            level=_level(level),
            level_name=LEVEL_NAMES[level],
            previous_level=None if previous is None else _level(int(previous)),
            summary=str(exp.get("summary", "")),
            model_version=exp.get("model_version"),
            completeness=_fraction(exp.get("overall_completeness"), "overall_completeness"),
            event=ev,
            **self._alert_context(level, exp, event_t),
        )
        return p

    def forecast(
        self,
        *,
        valid_from: float,
        horizon_s: float,
        predicted_mm: Mapping[str, float | None],
        exceedance: Sequence[Mapping[str, Any]],
        level: int,
        model_version: str | None,
        backend: str,
        completeness: float | None,
        thresholds_mm: Mapping[str, float] | None = None,
        model: Mapping[str, Any] | None = None,
        horizons: Sequence[Mapping[str, Any]] = (),
        warning: Mapping[str, Any] | None = None,
        t: float | None = None,
    ) -> dict[str, Any]:
        """Schema v2: ``exceedance`` is a list of ``{threshold_mm, probability, level}`` for the site's
        level thresholds at the warning horizon ``horizon_s``; ``horizons`` every horizon's forecast;
        ``model`` names the model and horizon; ``warning`` the alarm-rate target."""
        p = self.envelope("forecast", t)
        p.update(
            valid_from=iso_z(valid_from),
            valid_to=iso_z(valid_from + horizon_s),
            horizon_s=float(horizon_s),
            predicted_mm=clean_json(dict(predicted_mm), "predicted_mm"),
            exceedance=clean_json([dict(e) for e in exceedance], "exceedance"),
            thresholds_mm=clean_json(dict(thresholds_mm or {}), "thresholds_mm"),
            model=clean_json(dict(model or {"name": "displacement", "variant": None}), "model"),
            horizons=clean_json([dict(h) for h in horizons], "horizons"),
            warning=clean_json(None if warning is None else dict(warning), "warning"),
            level=_level(level),
            model_version=model_version,
            backend=backend,
            completeness=_fraction(completeness, "completeness"),
        )
        return p

    def telemetry(
        self,
        sensor: str,
        values: Mapping[str, float | None],
        *,
        window_start: float,
        window_end: float,
        completeness: float | None,
        count: int | None = None,
        t: float | None = None,
    ) -> dict[str, Any]:
        """One sensor's values over a window, keyed by sample channel (docs/development.md contract 1)."""
        p = self.envelope("telemetry", t)
        p.update(
            sensor=sensor,
            window_start=iso_z(window_start),
            window_end=iso_z(window_end),
            values=clean_json(dict(values), "values"),
            count=count,
            completeness=_fraction(completeness, "completeness"),
        )
        return p

    def wire(self, state: int, *, changed_at: float, level: int, t: float | None = None) -> dict[str, Any]:
        if state not in WIRE_STATES:
            raise PublishError(f"wire state {state!r} is unknown", fix=f"use one of {sorted(WIRE_STATES)}")
        p = self.envelope("wire", t)
        p.update(
            state=state,
            state_name=WIRE_STATES[state],
            changed_at=iso_z(changed_at),
            level=_level(level),
            completeness=1.0,
        )
        return p

    def riskmap(
        self,
        summary: Mapping[str, Any],
        *,
        level: int,
        model_version: str | None,
        completeness: float | None,
        t: float | None = None,
    ) -> dict[str, Any]:
        p = self.envelope("riskmap", t)
        p.update(
            level=_level(level),
            model_version=model_version,
            completeness=_fraction(completeness, "completeness"),
            summary=clean_json(dict(summary), "summary"),
        )
        return p

    def cmd_result(
        self, command: str, nonce: str | None, *, accepted: bool, detail: str, t: float | None = None
    ) -> dict[str, Any]:
        p = self.envelope("cmd_result", t)
        p.update(command=command, nonce=nonce, accepted=accepted, detail=detail)
        return p


def _level(level: int) -> int:
    if level not in LEVEL_NAMES:
        raise PublishError(f"alert level {level!r} is not 0..3", fix="levels are 0 normal .. 3 warning")
    return int(level)
