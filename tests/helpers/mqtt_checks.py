"""What a subscriber can verify from the MQTT messages alone: topic kinds, schema validity, de-duplication,
the alert-event chain (shared by the daemon / demo end-to-end tests)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from agent.publish import schemas
from agent.publish.cap import CAP_NS
from agent.publish.topics import TOPICS
from agent.publish.watch import Received

SCHEMA_BY_SUFFIX: dict[str, str] = {
    spec.suffix.split("/{", 1)[0]: spec.schema for spec in TOPICS.values() if spec.schema is not None
}


def suffix(topic: str) -> str:
    """``alert/event`` of ``lews/v1/{site}/{node}/alert/event``."""
    return topic.split("/", 4)[-1]


def kind_of(topic: str) -> str:
    """The topic-table kind of a received topic (telemetry/* -> telemetry, alert/event -> alert_event)."""
    s = suffix(topic)
    if s.startswith("telemetry/"):
        return "telemetry"
    for spec in TOPICS.values():
        if spec.suffix == s:
            return spec.kind
    raise ValueError(f"topic {topic} is not in the topic table")


def cap_identifier(payload: bytes) -> str:
    root = ET.fromstring(payload)
    if root.tag != f"{{{CAP_NS}}}alert":
        raise ValueError(f"CAP root element is {root.tag}")
    ident = root.findtext(f"{{{CAP_NS}}}identifier")
    if not ident:
        raise ValueError("CAP message without identifier")
    return ident


def msg_key(m: Received) -> str:
    """The stable id a subscriber de-duplicates on: ``msg_id`` (JSON) or the CAP ``<identifier>``."""
    if kind_of(m.topic) == "cap":
        return cap_identifier(m.payload)
    return str(m.json()["msg_id"])


def invalid_payloads(messages: list[Received]) -> list[str]:
    """Every schema violation (JSON Schema per topic; CAP: XML in the CAP 1.2 namespace), as text."""
    problems: list[str] = []
    for m in messages:
        if not m.payload:
            continue  # a cleared retained message
        kind = kind_of(m.topic)
        try:
            if kind == "cap":
                cap_identifier(m.payload)
                continue
            schema = TOPICS[kind].schema
            if schema is None:
                problems.append(f"{m.topic}: no schema")
                continue
            problems += [f"{m.topic}: {e}" for e in schemas.errors(schema, m.json())]
        except ValueError as exc:
            problems.append(f"{m.topic}: {exc}")
    return problems


def unique(messages: list[Received], *, skip_status: bool = True) -> list[Received]:
    """First copy of each message (QoS 1 may deliver twice); the retained status is not queued."""
    seen: set[str] = set()
    out: list[Received] = []
    for m in messages:
        if not m.payload or (skip_status and kind_of(m.topic) == "status"):
            continue
        key = msg_key(m)
        if key in seen:
            continue
        seen.add(key)
        out.append(m)
    return out


def alert_events(messages: list[Received]) -> list[dict[str, Any]]:
    """Unique alert lifecycle events, in the engine's order (global ``seq``)."""
    evs = [m.json() for m in unique(messages) if kind_of(m.topic) == "alert_event"]
    return sorted(evs, key=lambda e: int(e["seq"]))


def chain_problems(events: list[dict[str, Any]], first_seq: int = 1) -> list[str]:
    """Broken links: ``seq`` must run gapless from ``first_seq`` over all alerts; within one alert the
    first event is a trigger with no predecessor and each later one names the one before it."""
    problems: list[str] = []
    seqs = [int(e["seq"]) for e in events]
    if seqs != list(range(first_seq, first_seq + len(seqs))):
        problems.append(f"event seq not gapless from {first_seq}: {seqs}")
    last_of: dict[str, str] = {}
    open_alert: str | None = None
    for e in events:
        aid, eid, prev = str(e["alert_id"]), str(e["event_id"]), e["prev_event_id"]
        if aid not in last_of:
            if e["event_type"] != "trigger" or prev is not None:
                problems.append(f"alert {aid} starts with {e['event_type']} (prev {prev})")
        elif prev != last_of[aid]:
            problems.append(f"event {eid} links to {prev}, expected {last_of[aid]}")
        if e["event_type"] == "trigger":
            if open_alert is not None:
                problems.append(f"alert {aid} triggered while alert {open_alert} was still open")
            open_alert = aid
        elif e["event_type"] == "resolve":
            open_alert = None
        last_of[aid] = eid
    return problems


def per_topic(messages: list[Received]) -> Counter[str]:
    return Counter(suffix(m.topic) for m in messages)
