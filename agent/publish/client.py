"""The MQTT link: one paho-mqtt 2.x client (callback API v2) and a sender thread draining the outbox.

- MQTT 5 by default; ``protocol = "auto"`` falls back to 3.1.1 (once, logged) when the broker answers
  CONNACK "unsupported protocol version" or leaves an MQTT 5 CONNECT unanswered for
  ``connack_timeout_s`` (3.1.1-only brokers that misparse v5 will properties); never after v5 worked.
- QoS 1, at most ``inflight_window`` unacknowledged; a row is deleted at its PUBACK. paho retransmits
  in-flight messages after a reconnect; after a restart every unacknowledged row is sent again (same
  ``msg_id``: subscribers de-duplicate). ``send_now`` publishes before the row exists (the wire alarm).
- A JSON message that waited longer than ``historical_after_s`` gets ``historical: true``,
  ``original_time`` and ``queued_s``. TLS verified whenever a CA is configured; credentials from files
  or systemd credentials; exponential reconnect backoff; subscriptions renewed and the birth status
  published in every ``on_connect``, LWT set at connect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from agent.errors import OutboxError
from agent.publish.outbox import OutboundMessage, Outbox, StoredMessage
from agent.publish.settings import MqttSettings
from agent.publish.transport import load_password, mark_historical, new_client, publish_properties

log = logging.getLogger(__name__)
UNSUPPORTED_PROTOCOL = (1, 0x84)  # CONNACK codes: 3.1.1 "unacceptable protocol", 5 "unsupported version"
BROKER_REFUSED_HOLD_S = 60.0


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A message sent outside the outbox (birth status at each connect)."""

    topic: str
    payload: bytes
    retain: bool = True


class MqttLink:
    """Connection to one broker, draining one outbox. Thread-safe; start() once, stop() once."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        *,
        client_id: str,
        will: DirectMessage,
        birth: Callable[[], Sequence[DirectMessage]] = lambda: (),
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes, bool], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.client_id = client_id
        self._will = will
        self._birth = birth
        self._subscriptions = list(subscriptions)
        self._on_message_cb = on_message
        self._clock = clock
        self._password = load_password(settings)
        self.protocol = mqtt.MQTTv311 if settings.protocol == "3.1.1" else mqtt.MQTTv5
        self.connected = threading.Event()
        self.connected_since: float | None = None
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (row id, sent at)
        self._early_acks: dict[int, int] = {}  # mid -> reason code: PUBACK before mid was registered
        self._acked_rows: list[int] = []
        self._direct_mids: set[int] = set()  # birth / final messages: not outbox rows
        self._held: dict[int, float] = {}  # row id -> retry after (broker refused it)
        self._urgent: dict[str, int] = {}  # msg_id -> mid: sent by send_now, outbox row not adopted yet
        self._stop = threading.Event()
        self._v5_worked = False
        self._silent_since: float | None = None
        self._fallback_started = False
        self._client = self._make_client()
        self._sender = threading.Thread(target=self._sender_loop, name="mqtt-sender", daemon=True)

    # --- construction -------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        client = new_client(self.settings, self.client_id, self.protocol, self._password)
        client.will_set(self._will.topic, self._will.payload, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        log.info(
            "MQTT: connecting to %s:%d as %s (MQTT %s, TLS %s)",
            s.host,
            s.effective_port,
            self.client_id,
            "5" if self.protocol == mqtt.MQTTv5 else "3.1.1",
            "on" if s.tls.enabled else "off",
        )
        self._connect_async()
        self._client.loop_start()
        self._sender.start()

    def _connect_async(self) -> None:
        s = self.settings
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = True
        self._client.connect_async(s.host, s.effective_port, keepalive=s.keepalive_s, **kwargs)

    def stop(self, final: Sequence[DirectMessage] = (), drain_s: float = 2.0) -> None:
        """While connected, wait up to ``drain_s`` for the outbox to empty and in-flight acks to come
        back (what remains stays queued for the next start), publish ``final`` (e.g. offline status),
        disconnect."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.connected.is_set():
            with self._lock:
                if not self._inflight and self.outbox.depth == 0:
                    break
            self.wake()
            time.sleep(0.02)
        if self.connected.is_set():
            for msg in final:
                info = self._client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
                with self._lock:
                    self._direct_mids.add(info.mid)
                try:
                    info.wait_for_publish(max(0.1, deadline - time.monotonic() + 1.0))
                except (RuntimeError, ValueError):
                    log.warning("final message on %s not acknowledged before shutdown", msg.topic)
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._sender.is_alive():
            self._sender.join(5)
        self._apply_acks()
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    def publish_direct(self, msg: DirectMessage) -> bool:
        """Publish outside the outbox (status refresh) when connected; False when not connected."""
        if not self.connected.is_set():
            return False
        info = self._client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
        with self._lock:
            if info.mid in self._early_acks:
                self._early_acks.pop(info.mid)
            else:
                self._direct_mids.add(info.mid)
        return True

    def send_now(self, msg: OutboundMessage) -> bool:
        """Publish ``msg`` at once from the calling thread, before its outbox row exists (the wire alarm).

        The caller then commits the same message (same ``msg_id``) to the outbox and calls
        :meth:`adopt` with its row id: the row is deleted at the PUBACK like any other and the sender
        never publishes it a second time. Not connected: False, and the outbox row is sent as usual."""
        if not self.connected.is_set():
            return False
        # outside the lock: paho calls on_publish holding its own mutex, which publish() takes too
        info = self._client.publish(
            msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, properties=self._props(msg)
        )
        with self._lock:  # a PUBACK faster than this lands in _early_acks; adopt() finds it there
            self._urgent[msg.msg_id] = info.mid
        self.outbox.note_sent()
        self.counters["sent_before_commit"] += 1
        return True

    def adopt(self, row_id: int, msg_id: str) -> bool:
        """The outbox row of a message :meth:`send_now` already published: track it as in flight."""
        with self._wake:
            return self._adopt_locked(row_id, msg_id, self._clock())

    def _adopt_locked(self, row_id: int, msg_id: str, now: float) -> bool:
        mid = self._urgent.pop(msg_id, None)
        if mid is None:
            return False
        code = self._early_acks.pop(mid, None)
        if code is not None:
            self._settle(row_id, code)
            self._wake.notify_all()
        else:
            self._inflight[mid] = (row_id, now)
        return True

    def wake(self) -> None:
        """Tell the sender new messages are in the outbox."""
        with self._wake:
            self._wake.notify_all()

    # --- paho callbacks (network thread) ------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
        code = int(getattr(rc, "value", rc))
        if code != 0:
            self.counters["connect_refused"] += 1
            auto_v5 = self.settings.protocol == "auto" and self.protocol == mqtt.MQTTv5
            if auto_v5 and code in UNSUPPORTED_PROTOCOL:
                log.warning("MQTT broker refuses MQTT 5; falling back to 3.1.1")
                self.counters["protocol_fallback"] += 1
                threading.Thread(target=self._fallback_311, name="mqtt-fallback", daemon=True).start()
                return
            log.error("MQTT broker refused the connection: %s", rc)
            return
        self.counters["connects"] += 1
        self.connected_since = self._clock()
        if self.protocol == mqtt.MQTTv5:
            self._v5_worked = True
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        for msg in self._birth():
            info = client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            with self._lock:
                self._direct_mids.add(info.mid)
        self.connected.set()
        log.info("MQTT connected to %s:%d", self.settings.host, self.settings.effective_port)
        self.wake()

    def _may_fall_back(self) -> bool:
        auto_v5 = self.settings.protocol == "auto" and self.protocol == mqtt.MQTTv5
        return auto_v5 and not self._v5_worked and not self._fallback_started

    def _start_fallback(self, why: str) -> None:
        self._fallback_started = True
        log.warning("MQTT: %s; falling back to MQTT 3.1.1", why)
        self.counters["protocol_fallback"] += 1
        threading.Thread(target=self._fallback_311, name="mqtt-fallback", daemon=True).start()

    def _check_silent_broker(self) -> None:
        """Sender thread: an open TCP connection without CONNACK for too long (auto mode only)."""
        if not self._may_fall_back() or self.connected.is_set() or self._client.socket() is None:
            self._silent_since = None
            return
        now = time.monotonic()
        if self._silent_since is None:
            self._silent_since = now
        elif now - self._silent_since > self.settings.connack_timeout_s:
            self._start_fallback(
                f"no CONNACK to an MQTT 5 CONNECT within {self.settings.connack_timeout_s:g} s"
            )

    def _fallback_311(self) -> None:
        old = self._client
        old.disconnect()
        old.loop_stop()
        with self._lock:  # paho's queue of the old client is gone: those rows must be sent again
            self._inflight.clear()
            self._early_acks.clear()
            self._direct_mids.clear()
            self._urgent.clear()
        self.protocol = mqtt.MQTTv311
        self._client = self._make_client()
        self._connect_async()
        self._client.loop_start()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _flags: Any, rc: Any, _props: Any) -> None:
        was = self.connected.is_set()
        self.connected.clear()
        if self._stop.is_set():
            log.info("MQTT disconnected at shutdown; %d message(s) stay in the outbox", self.outbox.depth)
        elif was:
            self.counters["disconnects"] += 1
            log.warning("MQTT disconnected (%s); messages queue in the outbox", rc)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        n = self.counters["connect_failures"] = self.counters["connect_failures"] + 1
        if n in (1, 10, 100) or n % 1000 == 0:
            s = self.settings
            log.warning("MQTT broker %s:%d unreachable (%d attempts so far)", s.host, s.effective_port, n)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, rc: Any, _props: Any) -> None:
        code = int(getattr(rc, "value", 0) or 0)
        with self._wake:
            if mid in self._direct_mids:
                self._direct_mids.discard(mid)
                return
            entry = self._inflight.pop(mid, None)
            if entry is None:
                self._early_acks[mid] = code
                return
            self._settle(entry[0], code)
            self._wake.notify_all()

    def _settle(self, row_id: int, code: int) -> None:
        """Called with the lock held: the broker answered for ``row_id``."""
        if code >= 0x80:
            self.counters["broker_refused"] += 1
            self._held[row_id] = self._clock() + BROKER_REFUSED_HOLD_S
            log.error("broker refused outbox message %d (reason code 0x%02x); retrying later", row_id, code)
        else:
            self._acked_rows.append(row_id)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if self._on_message_cb is not None:
            try:
                self._on_message_cb(message.topic, bytes(message.payload), bool(message.retain))
            except Exception:  # one bad inbound message must never stop the network thread
                self.counters["inbound_handler_errors"] += 1
                log.exception("handler for inbound MQTT message on %s failed", message.topic)

    # --- sender -------------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._apply_acks()
                self._check_silent_broker()
                if not self._send_some():
                    with self._wake:
                        self._wake.wait(0.5)
            except OutboxError as exc:
                self.counters["outbox_errors"] += 1
                log.error("%s", exc)
                self._stop.wait(1.0)
            except Exception:  # the sender must outlive any surprise; the rows stay in the outbox
                self.counters["sender_errors"] += 1
                log.exception("MQTT sender failed; retrying in 1 s (messages stay in the outbox)")
                self._stop.wait(1.0)

    def _apply_acks(self) -> None:
        with self._lock:
            rows, self._acked_rows = self._acked_rows, []
        if rows:
            try:
                self.outbox.ack(rows)
            except OutboxError:
                with self._lock:  # keep them: deleted later, never re-sent meanwhile
                    self._acked_rows = rows + self._acked_rows
                raise

    def _send_some(self) -> bool:
        """Publish what the window allows; True when something was sent."""
        if not self.connected.is_set():
            return False
        now = self._clock()
        with self._lock:
            free = self.settings.inflight_window - len(self._inflight)
            busy = {row for row, _ in self._inflight.values()}
            busy.update(self._acked_rows)  # acknowledged, not yet deleted: never send again
            self._held = {r: until for r, until in self._held.items() if until > now}
            busy.update(self._held)
        if free <= 0:
            return False
        batch = self.outbox.next_batch(free, exclude=busy)
        for stored in batch:
            if not self.connected.is_set():
                break
            self._publish(stored, now)
        return bool(batch)

    def _props(self, msg: OutboundMessage) -> Properties | None:
        return publish_properties(msg) if self.protocol == mqtt.MQTTv5 else None

    def _publish(self, stored: StoredMessage, now: float) -> None:
        msg = stored.message
        with self._wake:
            if self._adopt_locked(stored.id, msg.msg_id, now):
                return  # already sent by send_now: its PUBACK settles this row
            if stored.id in self._acked_rows or any(row == stored.id for row, _ in self._inflight.values()):
                return  # adopted by send_now's caller after this batch was read: never a second send
        marked = mark_historical(msg, now, self.settings.outbox.historical_after_s)
        if marked is not None:
            self.counters["historical"] += 1
        payload = msg.payload if marked is None else marked
        info = self._client.publish(
            msg.topic, payload, qos=msg.qos, retain=msg.retain, properties=self._props(msg)
        )
        self.outbox.note_sent()
        with self._wake:
            code = self._early_acks.pop(info.mid, None)
            if code is not None:
                self._settle(stored.id, code)
            else:
                self._inflight[info.mid] = (stored.id, now)

    # --- introspection ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            inflight = len(self._inflight)
            held = len(self._held)
        return {
            "connected": self.connected.is_set(),
            "protocol": "5" if self.protocol == mqtt.MQTTv5 else "3.1.1",
            "inflight": inflight,
            "held_refused": held,
            **dict(self.counters),
        }
