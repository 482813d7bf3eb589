"""Checks shared by the daemon / demo end-to-end tests (what a subscriber can verify from MQTT alone),
and the tests of those checks and of the harness pieces they rely on."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.compat import tomllib
from agent.config import config_from_dict
from agent.demo.harness import toml_text
from agent.demo.run import SimClock, demo_config_data
from agent.demo.scenario import START_UTC
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


# ---- tests of the checks and of the harness pieces ---------------------------------------------------
def _event(seq: int, alert: str, kind: str, prev: str | None) -> dict[str, Any]:
    return {
        "seq": seq,
        "alert_id": alert,
        "event_id": f"{alert}.{seq}",
        "prev_event_id": prev,
        "event_type": kind,
    }


def test_chain_problems_finds_gaps_and_broken_links() -> None:
    good = [
        _event(1, "a", "trigger", None),
        _event(2, "a", "update", "a.1"),
        _event(3, "a", "resolve", "a.2"),
    ]
    good.append(_event(4, "b", "trigger", None))
    assert chain_problems(good) == []
    gap = [good[0], good[2]]
    assert any("gapless" in p for p in chain_problems(gap))
    assert any("links to a.2, expected a.1" in p for p in chain_problems(gap))
    second_trigger = [_event(1, "a", "trigger", None), _event(2, "a", "trigger", None)]
    assert any("links to None" in p for p in chain_problems(second_trigger))
    assert any("starts with update" in p for p in chain_problems([_event(1, "c", "update", "x.0")]))
    retrigger = [_event(1, "a", "trigger", None), _event(2, "b", "trigger", None)]
    assert any("while alert a was still open" in p for p in chain_problems(retrigger))


def test_toml_text_round_trips_the_demo_config(tmp_path: Path) -> None:
    data = demo_config_data(tmp_path, "127.0.0.1", 1883, "/dev/pts/98", "/dev/pts/99", 2.0e5)
    text = toml_text(data)
    back = tomllib.loads(text)
    assert back == data
    cfg = config_from_dict(back)
    assert [p.path for p in cfg.sensors.ports] == ["/dev/pts/98", "/dev/pts/99"]
    assert cfg.warning.wire.max_age_s >= 2 * 2.0e5  # scaled with the time compression


def test_sim_clock_anchor_is_shared_across_instances() -> None:
    anchor = time.time() + 0.2
    a, b = SimClock(1000.0, START_UTC, anchor_wall=anchor), SimClock(1000.0, START_UTC, anchor_wall=anchor)
    assert a() == START_UTC  # before the anchor: the scenario start
    time.sleep(0.3)
    ta, tb = a(), b()
    assert START_UTC + 50.0 < ta <= tb < START_UTC + 1000.0
    assert tb - ta < 5.0  # two processes with the same anchor agree to milliseconds


def test_invalid_payloads_reports_schema_errors() -> None:
    bad = Received("lews/v1/s/n/wire", b'{"schema": "lews.wire", "state": 9}', True, 0.0)
    assert invalid_payloads([bad])
    with pytest.raises(ValueError):
        kind_of("lews/v1/s/n/nonsense")
