"""The MQTT topic tree as data: one row per message kind (topic, QoS, retained, outbox policy, schema).

Everything the agent publishes or subscribes to lives under ``lews/v1/{site}/{node}/``. docs/mqtt.md
documents the same table for subscribers; tests check the two agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import ConfigError

TOPIC_ROOT = "lews/v1"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How one kind of message travels.

    ``priority``: 0 is sent first (alerts, wire), 2 last (telemetry). ``droppable``: the outbox may drop
    it (counted) when full; never true for alerts. ``coalesce``: a newer unsent message of the same topic
    replaces an older unsent one (counted), for "latest value" topics.
    """

    kind: str
    suffix: str  # relative to lews/v1/{site}/{node}/ ; "{sensor}" is filled in per message
    qos: int
    retain: bool
    priority: int
    droppable: bool
    coalesce: bool
    schema: str | None  # file stem in agent/schemas/ ; None for non-JSON payloads (CAP XML)
    content_type: str


TOPICS: dict[str, TopicSpec] = {
    spec.kind: spec
    for spec in (
        TopicSpec("status", "status", 1, True, 0, False, True, "status", "application/json"),
        TopicSpec("alert", "alert", 1, True, 0, False, False, "alert", "application/json"),
        TopicSpec("alert_event", "alert/event", 1, False, 0, False, False, "alert_event", "application/json"),
        TopicSpec("cap", "cap", 1, True, 0, False, False, None, "application/cap+xml"),
        TopicSpec("wire", "wire", 1, True, 0, False, False, "wire", "application/json"),
        TopicSpec("cmd_result", "cmd_result", 1, False, 1, False, False, "cmd_result", "application/json"),
        TopicSpec("forecast", "forecast", 1, True, 1, False, False, "forecast", "application/json"),
        TopicSpec("riskmap", "riskmap", 1, True, 1, False, True, "riskmap", "application/json"),
        TopicSpec(
            "telemetry", "telemetry/{sensor}", 1, False, 2, True, False, "telemetry", "application/json"
        ),
    )
}

# Inbound: signed commands (see agent/publish/commands.py). One level below cmd/: the command name.
CMD_SUFFIX = "cmd"
COMMAND_SCHEMA = "command"


def check_id(value: str, what: str) -> str:
    """A site / node / sensor id must be one MQTT topic level without wildcards."""
    if not _ID_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} cannot be used in an MQTT topic",
            fix=f"use 1-64 characters of A-Z a-z 0-9 _ . - for the {what}, starting with a letter or digit",
        )
    return value


def base_topic(site: str, node: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/{check_id(node, 'node')}"


def topic_for(kind: str, site: str, node: str, sensor: str | None = None) -> str:
    """Full topic of a message kind; ``sensor`` is required for telemetry."""
    spec = TOPICS[kind]
    suffix = spec.suffix
    if "{sensor}" in suffix:
        if sensor is None:
            raise ConfigError(f"topic {kind!r} needs a sensor name", fix="pass sensor=, e.g. 'gnss'")
        suffix = suffix.format(sensor=check_id(sensor, "sensor"))
    return f"{base_topic(site, node)}/{suffix}"


def command_filter(site: str, node: str) -> str:
    """Subscription filter for inbound commands: lews/v1/{site}/{node}/cmd/+ ."""
    return f"{base_topic(site, node)}/{CMD_SUFFIX}/+"


def command_name(topic: str, site: str, node: str) -> str | None:
    """The command name of an inbound topic, or None when it is not one of ours."""
    prefix = f"{base_topic(site, node)}/{CMD_SUFFIX}/"
    if not topic.startswith(prefix):
        return None
    name = topic[len(prefix) :]
    return name if name and "/" not in name else None
