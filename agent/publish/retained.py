"""Retained state always current, and alarms out even on a full disk.

- The last retained ``alert`` and ``wire`` payloads are committed in the outbox's meta table in the
  same transaction as the message (key ``retained:<kind>``) and re-published, byte for byte (same
  ``msg_id``), at every connect after the birth status. The daemon publishes the engine's current
  alert at start when it differs from the stored one (``Publisher.publish_current_alert``).
- When the outbox cannot store a message (disk full, I/O error), an alarm topic (alert, alert event,
  CAP, wire, command result) is sent live once, marked ``durable: false`` and counted
  (``live_not_durable``; ``live_unsent`` when not connected); droppable topics are shed (``shed``), as
  telemetry is at once while ``Publisher.shed_droppable`` is set (the daemon's disk job sets it when the
  disk runs low). A retained payload sent live is held in memory until a durable one replaces it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from typing import Any

from agent.publish.client import DirectMessage, MqttLink
from agent.publish.outbox import OutboundMessage, Outbox
from agent.publish.payloads import dumps
from agent.publish.topics import topic_for

log = logging.getLogger(__name__)

RETAINED_META = {"alert": "retained:alert", "wire": "retained:wire"}


def not_durable(msg: OutboundMessage) -> bytes:
    """The payload marked ``durable: false`` (JSON topics; CAP XML is sent as it is)."""
    if msg.content_type != "application/json":
        return msg.payload
    data = json.loads(msg.payload)
    data["durable"] = False
    return dumps(data)


class RetainedState:
    """What the broker should hold on this node's retained alarm topics."""

    def __init__(self, outbox: Outbox, site: str, node: str) -> None:
        self.outbox = outbox
        self.topics = {kind: topic_for(kind, site, node) for kind in RETAINED_META}
        self._live: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def kind_of(self, topic: str) -> str | None:
        return next((k for k, t in self.topics.items() if t == topic), None)

    def meta_for(self, msg: OutboundMessage) -> dict[str, str | None]:
        """Meta to commit with ``msg`` (empty unless it is a retained alarm topic)."""
        kind = self.kind_of(msg.topic)
        return {} if kind is None else {RETAINED_META[kind]: msg.payload.decode()}

    def stored(self, msgs: list[OutboundMessage]) -> None:
        """``msgs`` were committed: their meta is now the truth (a live copy is outdated)."""
        with self._lock:
            for msg in msgs:
                kind = self.kind_of(msg.topic)
                if kind is not None:
                    self._live.pop(kind, None)

    def sent_live(self, topic: str, payload: bytes) -> None:
        kind = self.kind_of(topic)
        if kind is not None:
            with self._lock:
                self._live[kind] = payload

    def payload(self, kind: str) -> bytes | None:
        with self._lock:
            live = self._live.get(kind)
        if live is not None:
            return live
        text = self.outbox.get_meta(RETAINED_META[kind])
        return None if text is None else text.encode()

    def last(self, kind: str) -> dict[str, Any] | None:
        """The last retained payload of ``kind`` as data (None: none, or unreadable: logged)."""
        raw = self.payload(kind)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            log.error("stored retained %s payload unreadable; it is not re-published", kind)
            return None
        return data if isinstance(data, dict) else None

    def messages(self) -> list[DirectMessage]:
        """The last retained alert and wire payloads as stored (same ``msg_id``), for every connect;
        one still queued in the outbox is left to it (it goes out right after, once)."""
        out: list[DirectMessage] = []
        for kind, topic in self.topics.items():
            raw = self.payload(kind)
            if raw is None:
                continue
            try:
                msg_id = json.loads(raw).get("msg_id")
            except (ValueError, AttributeError):
                msg_id = None
            if isinstance(msg_id, str) and self.outbox.queued(msg_id):
                continue
            out.append(DirectMessage(topic, raw))
        return out


def send_live(
    link: MqttLink,
    retained: RetainedState,
    counters: Counter[str],
    msgs: list[OutboundMessage],
    exc: Exception,
    *,
    already_sent: bool = False,
) -> None:
    """The outbox refused ``msgs``: send the undroppable ones live (marked ``durable: false``, unless
    ``already_sent``: then only their durability is lost), shed the rest; everything counted."""
    for msg in msgs:
        if msg.droppable:
            counters["shed"] += 1
            continue
        if already_sent:
            retained.sent_live(msg.topic, msg.payload)
            counters["live_not_durable"] += 1
            continue
        payload = not_durable(msg)
        retained.sent_live(msg.topic, payload)  # re-sent at each connect until one is stored
        sent = link.publish_direct(DirectMessage(msg.topic, payload, retain=msg.retain))
        counters["live_not_durable" if sent else "live_unsent"] += 1
    n = counters["live_not_durable"] + counters["live_unsent"]
    if n and (n == 1 or n % 100 == 0):
        log.error("outbox refused messages (%s): alarms sent live, not durable (%d so far)", exc, n)
