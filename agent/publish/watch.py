"""A small MQTT subscriber that records what arrives: for `agent demo`'s live view, tests and benchmarks.

It also shows subscribers how to de-duplicate: QoS 1 may deliver a message twice (re-sent after a
crash between send and PUBACK); the ``msg_id`` in every payload (CAP: <identifier>) is stable.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.errors import PublishError


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    t: float  # arrival, epoch seconds

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.payload)
        return data


class TopicWatcher:
    """Subscribe to ``topic_filter`` on a broker and keep every message (thread-safe)."""

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "lews/v1/#",
        *,
        protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311,
        on_receive: Callable[[Received], None] | None = None,
        client_id: str | None = None,
        persistent: bool = False,
    ) -> None:
        """``persistent=True`` (MQTT 3.1.1, fixed ``client_id``): the broker keeps QoS 1 messages for this
        watcher while it is disconnected, so an outage of the broker loses nothing for it either."""
        self.host, self.port, self.topic_filter = host, port, topic_filter
        self.messages: list[Received] = []
        self._on_receive = on_receive
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        if persistent and (client_id is None or protocol != mqtt.MQTTv311):
            raise PublishError("a persistent watcher needs a client_id and MQTT 3.1.1", fix="pass client_id=")
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"lews-watch-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=not persistent if protocol == mqtt.MQTTv311 else None,
        )
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> TopicWatcher:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise PublishError(
                f"could not subscribe to {self.topic_filter} on {self.host}:{self.port} within {timeout:g} s",
                fix="check the broker is running and reachable",
            )
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> TopicWatcher:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not getattr(rc, "is_failure", False):
            client.subscribe(self.topic_filter, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        rec = Received(msg.topic, bytes(msg.payload), bool(msg.retain), time.time())
        with self._cond:
            self.messages.append(rec)
            self._cond.notify_all()
        if self._on_receive is not None:
            self._on_receive(rec)

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        """Block until ``predicate(messages)`` holds; returns the messages (check predicate yourself)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.2))
            return list(self.messages)


def unique_by_msg_id(messages: list[Received]) -> list[Received]:
    """Drop QoS-1 duplicates: keep the first message per msg_id (JSON payloads; others kept as is)."""
    seen: set[str] = set()
    out = []
    for m in messages:
        try:
            mid = m.json().get("msg_id")
        except ValueError:
            mid = None
        if mid is not None:
            if mid in seen:
                continue
            seen.add(mid)
        out.append(m)
    return out
