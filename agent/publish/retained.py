"""The node's retained ``alert`` and ``wire`` payloads, kept so they can be re-published at every
connect, and the ``durable: false`` mark of a message sent live because the outbox could not keep it.

The last payload of each kind is committed in the outbox's meta table in the same transaction as the
message itself (key ``retained:<kind>``); one sent live (outbox refused) is held in memory until a
durable one replaces it.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from agent.publish.client import DirectMessage
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
        """The last retained alert and wire payloads as stored (same ``msg_id``), for every connect."""
        out: list[DirectMessage] = []
        for kind, topic in self.topics.items():
            raw = self.payload(kind)
            if raw is not None:
                out.append(DirectMessage(topic, raw))
        return out
