"""The publishing facade the daemon uses: builds payloads, validates them against their JSON Schema,
commits them to the durable outbox and lets the MQTT link send them; answers signed commands.

Only the retained ``status`` (birth at each connect, periodic refresh, LWT) goes around the outbox:
it describes the live connection, so a stale copy would be wrong. Everything else goes through it.

Retained state is always current and a full disk degrades, never silences: see agent/publish/retained.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from agent.errors import CommandRejected, LewsError, OutboxError, PublishError
from agent.publish import schemas
from agent.publish.cap_outbound import cap_outbound
from agent.publish.client import DirectMessage, MqttLink
from agent.publish.commands import CommandVerifier, VerifiedCommand
from agent.publish.outbox import OutboundMessage, Outbox
from agent.publish.payloads import PayloadFactory, dumps
from agent.publish.retained import RetainedState, send_live
from agent.publish.settings import MqttSettings
from agent.publish.topics import TOPICS, command_filter, command_name, topic_for

log = logging.getLogger(__name__)
CommandHandler = Callable[[VerifiedCommand], str]
NONCE_FILE = "command_nonces.sqlite"  # seen command nonces, beside the outbox (agent/publish/nonces.py)
# Outbox meta key of the warning engine state, committed with the events it produced.
ENGINE_STATE_KEY = "engine_state"


class Publisher:
    """One node's publishing: ``start()``, ``publish_*()`` from any thread, ``stop()``."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        site: str,
        node: str,
        agent_version: str,
        backend: str = "unknown",
        mode: str = "normal",
        handlers: Mapping[str, CommandHandler] | None = None,
        clock: Callable[[], float] = time.time,
        wall_clock: Callable[[], float] = time.time,
        sensors: Mapping[str, list[dict[str, Any]]] | None = None,
        validity_s: Mapping[int, float] | None = None,
    ) -> None:
        """``clock`` dates the payloads (the daemon's, possibly simulated, time); ``wall_clock`` is real
        time for what depends on it: the outbox's queue ages (historical marking) and command
        freshness against the signer's clock. ``sensors`` (source -> sensors behind it) and
        ``validity_s`` (level -> seconds) give alerts their ``sensors`` and ``expires``."""
        self.settings = settings
        self.site, self.node = site, node
        self.factory = PayloadFactory(
            site, node, agent_version, clock=clock, sensors=sensors or {}, validity_s=validity_s or {}
        )
        self._clock = clock
        self.backend, self.mode = backend, mode
        self.started_at = clock()
        self.outbox_depth_at_close = -1  # set by stop(): messages left for the next start
        topic_for("status", site, node)  # validates site/node early
        ob = settings.outbox
        self.outbox = Outbox(
            ob.path,
            synchronous=ob.synchronous,
            max_messages=ob.max_messages,
            hard_limit_bytes=None if ob.hard_limit_mb is None else int(ob.hard_limit_mb * 1024 * 1024),
            clock=wall_clock,
        )
        self.retained = RetainedState(self.outbox, site, node)
        self.verifier = (
            CommandVerifier.from_settings(
                settings.commands, wall_clock, nonce_path=ob.path.with_name(NONCE_FILE)
            )
            if settings.commands.enabled
            else None
        )
        self.handlers: dict[str, CommandHandler] = {"ping": lambda _c: "pong", **(handlers or {})}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.counters: Counter[str] = Counter()  # live_not_durable, shed, telemetry_shed, invalid_sent
        self.shed_droppable = False  # set while the disk runs low: telemetry is not even queued
        self._degraded: str | None = None  # reason shown in the retained status (e.g. "disk full ...")
        self._batch = threading.local()  # .msgs: telemetry collected by telemetry_batch() on this thread
        will = self.factory.status(
            "offline",
            backend=backend,
            started_at=self.started_at,
            mode=mode,
            reason="connection lost (last will)",
        )
        self.link = MqttLink(
            settings,
            self.outbox,
            client_id=settings.client_id or f"lews-{site}-{node}",
            will=DirectMessage(topic_for("status", site, node), dumps(will)),
            birth=lambda: [self._status_message("online", None), *self.retained.messages()],
            subscriptions=[command_filter(site, node)] if self.verifier else [],
            on_message=self._on_message,
            clock=wall_clock,
        )
        self._status_thread = threading.Thread(target=self._status_loop, name="mqtt-status", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.link.start()
        self._status_thread.start()

    def stop(self, reason: str = "shutdown") -> None:
        self._stop.set()
        if self._status_thread.is_alive():
            self._status_thread.join(5)
        self.link.stop(final=[self._status_message("offline", reason)])
        self.outbox_depth_at_close = int(self.outbox.stats()["depth"])
        self.outbox.close()
        if self.verifier is not None:
            self.verifier.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- status -------------------------------------------------------------------------------------
    def set_backend(self, backend: str, mode: str) -> None:
        """Record the inference backend / mode and refresh the retained status now."""
        with self._lock:
            self.backend, self.mode = backend, mode
        self.link.publish_direct(self._status_message("online", None))

    def set_degraded(self, reason: str | None) -> None:
        """Show ``reason`` (e.g. "disk full: ...") in the retained status with mode "degraded";
        None: back to the backend's mode. Refreshes the status at once when the mode flips (new
        numbers in the same mode go out with the periodic status)."""
        with self._lock:
            flipped = (reason is None) != (self._degraded is None)
            self._degraded = reason
        if flipped:
            self.link.publish_direct(self._status_message("online", None))

    def _status_message(self, state: str, reason: str | None) -> DirectMessage:
        with self._lock:
            backend, mode = self.backend, self.mode
            if self._degraded is not None and state == "online":
                mode, reason = "degraded", reason or self._degraded
        summary = self._outbox_summary()
        payload = self.factory.status(
            state, backend=backend, started_at=self.started_at, mode=mode, reason=reason, outbox=summary
        )
        schemas.validate("status", payload)
        return DirectMessage(topic_for("status", self.site, self.node), dumps(payload))

    def _outbox_summary(self) -> dict[str, Any]:
        st = self.outbox.stats()
        return {k: st[k] for k in ("depth", "oldest_age_s", "acked", "dropped")}

    def _status_loop(self) -> None:
        while not self._stop.wait(self.settings.status_interval_s):
            self.link.publish_direct(self._status_message("online", None))

    # --- outbound -----------------------------------------------------------------------------------
    def message(self, kind: str, payload: Mapping[str, Any], sensor: str | None = None) -> OutboundMessage:
        """Validate a JSON payload against its schema and wrap it for the outbox."""
        spec = TOPICS[kind]
        if spec.schema is None:
            raise PublishError(f"{kind} is not a JSON topic", fix="use publish_alert_event for CAP")
        schemas.validate(spec.schema, payload)
        return self._wrap(kind, payload, sensor)

    def _wrap(self, kind: str, payload: Mapping[str, Any], sensor: str | None = None) -> OutboundMessage:
        spec = TOPICS[kind]
        topic = topic_for(kind, self.site, self.node, sensor)
        return OutboundMessage(
            topic=topic,
            payload=dumps(payload),
            qos=spec.qos,
            retain=spec.retain,
            priority=spec.priority,
            droppable=spec.droppable,
            msg_id=str(payload["msg_id"]),
            content_type=spec.content_type,
            coalesce_key=topic if spec.coalesce else None,
        )

    def enqueue(
        self,
        kind: str,
        payload: Mapping[str, Any],
        sensor: str | None = None,
        meta: dict[str, str | None] | None = None,
    ) -> int | None:
        """Commit one payload to the outbox (None: refused because the outbox is full, or sent live /
        shed because it could not be stored; counted)."""
        return self._commit([self.message(kind, payload, sensor)], meta)[0]

    def _commit(
        self, msgs: list[OutboundMessage], meta: dict[str, str | None] | None = None
    ) -> list[int | None]:
        """Commit messages (and meta) in one transaction; when the outbox cannot store them, send the
        undroppable ones live (marked ``durable: false``) and shed the rest, all counted."""
        try:
            rows = self.outbox.enqueue_many(msgs, meta=meta)
        except OutboxError as exc:
            send_live(self.link, self.retained, self.counters, msgs, exc)
            return [None] * len(msgs)
        self.retained.stored(msgs)
        if msgs:
            self.link.wake()
        return rows

    def publish_alert_event(
        self,
        event: Mapping[str, Any] | Any,
        *,
        current_explanation: Mapping[str, Any] | Any,
        current_level: int,
        current_alert_id: str | None,
        acknowledged_by: str | None = None,
        state: str | None = None,
    ) -> list[int | None]:
        """One engine ``AlertEvent``: the event, its CAP message and the new retained current alert,
        committed in one transaction (all or nothing), with the engine ``state`` when given."""
        return self._publish_alerts(
            [event], current_explanation, current_level, current_alert_id, acknowledged_by, state
        )

    def publish_evaluation(
        self, result: Any, acknowledged_by: str | None = None, state: str | None = None
    ) -> list[int | None]:
        """Every event of a warning-engine ``EvaluationResult`` and the engine ``state`` (JSON) in ONE
        transaction: after a crash the outbox holds either both or neither, so a restarted engine
        neither re-emits nor loses an event. No events and no state: nothing is written."""
        if not result.events and state is None:
            return []
        return self._publish_alerts(
            list(result.events),
            result.explanation,
            int(result.published_level),
            result.alert_id,
            acknowledged_by,
            state,
        )

    def engine_state(self) -> str | None:
        """The warning engine state last committed with :meth:`publish_evaluation` (None: never)."""
        return self.outbox.get_meta(ENGINE_STATE_KEY)

    def _publish_alerts(
        self,
        events: list[Any],
        current_explanation: Mapping[str, Any] | Any,
        current_level: int,
        current_alert_id: str | None,
        acknowledged_by: str | None,
        state: str | None,
    ) -> list[int | None]:
        msgs: list[OutboundMessage] = []
        caps: list[OutboundMessage] = []
        meta: dict[str, str | None] = {}
        for event in events:
            ev = self.factory.alert_event(event)
            msgs.append(self.message("alert_event", ev))
            if self.settings.cap.enabled:
                msg, refs = self._cap_message(ev, meta)
                caps.append(msg)
                meta.update(refs)
        if events:  # order: the events, the new retained alert, then their CAP messages
            cur = self.factory.alert(
                current_level, current_explanation, alert_id=current_alert_id, acknowledged_by=acknowledged_by
            )
            alert = self.message("alert", cur)
            msgs.append(alert)
            msgs.extend(caps)
            meta.update(self.retained.meta_for(alert))
        if state is not None:
            meta[ENGINE_STATE_KEY] = state
        return self._commit(msgs, meta)

    def _cap_message(
        self, ev: Mapping[str, Any], pending: Mapping[str, str | None]
    ) -> tuple[OutboundMessage, dict[str, str | None]]:
        """The CAP message of one event; ``pending``: meta of the same transaction not yet committed."""
        key = f"cap_refs:{ev['alert_id']}"
        refs = ((pending[key] if key in pending else self.outbox.get_meta(key)) or "").split()
        msg, chain = cap_outbound(self.settings.cap, self.site, self.node, ev, refs, self._clock())
        return msg, {key: chain}

    def publish_current_alert(
        self, level: int, explanation: Mapping[str, Any] | Any, alert_id: str | None
    ) -> int | None:
        """Only the retained current alert (at start, when the stored one differs from the engine's)."""
        msg = self.message("alert", self.factory.alert(level, explanation, alert_id=alert_id))
        return self._commit([msg], self.retained.meta_for(msg))[0]

    def publish_forecast(self, **kwargs: Any) -> int | None:
        return self.enqueue("forecast", self.factory.forecast(**kwargs))

    def publish_telemetry(self, sensor: str, values: Mapping[str, float | None], **kwargs: Any) -> int | None:
        """Commit one telemetry message (shed, counted, while the disk runs low); inside
        :meth:`telemetry_batch` it is collected (returns None) and committed with the batch's others."""
        if self.shed_droppable:  # the space left is for alarms
            self.counters["telemetry_shed"] += 1
            return None
        msg = self.message("telemetry", self.factory.telemetry(sensor, values, **kwargs), sensor)
        pending: list[OutboundMessage] | None = getattr(self._batch, "msgs", None)
        if pending is not None:
            pending.append(msg)
            return None
        return self._commit([msg])[0]

    @contextmanager
    def telemetry_batch(self) -> Iterator[None]:
        """Telemetry published in the block (this thread) goes to the outbox in ONE commit (one fsync)
        at its end, so a telemetry round holds the outbox lock once, not once per sensor."""
        self._batch.msgs = []
        try:
            yield
        finally:
            msgs, self._batch.msgs = self._batch.msgs, None
            if msgs:
                self._commit(msgs)

    def publish_wire(self, state: int, *, changed_at: float, level: int) -> int | None:
        """Wire alarm first: sent at once, committed (fsync) while it travels; no validation (after,
        counted), lock or fsync ahead of the send. The link adopts the row (deleted at PUBACK, never
        re-sent); offline it goes from the outbox; full disk: live (retained.py). docs/mqtt.md."""
        payload = self.factory.wire(state, changed_at=changed_at, level=level)
        msg = self._wrap("wire", payload)
        sent = self.link.send_now(msg)
        try:
            row = self.outbox.enqueue_many([msg], meta=self.retained.meta_for(msg))[0]
        except OutboxError as exc:
            row = None
            send_live(self.link, self.retained, self.counters, [msg], exc, already_sent=sent)
        else:
            self.retained.stored([msg])
            if sent and row is not None:
                self.link.adopt(row, msg.msg_id)
        self.link.wake()
        try:
            schemas.validate(TOPICS["wire"].schema or "wire", payload)
        except PublishError as exc:
            self.counters["invalid_sent"] += 1
            log.error("the wire message sent does not match its schema: %s", exc)
        return row

    def publish_riskmap(self, summary: Mapping[str, Any], **kwargs: Any) -> int | None:
        return self.enqueue("riskmap", self.factory.riskmap(summary, **kwargs))

    # --- inbound commands ---------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        name = command_name(topic, self.site, self.node)
        if name is None or self.verifier is None:
            return
        try:
            cmd = self.verifier.verify(name, payload, retained=retained)
        except CommandRejected:
            return  # counted and logged by the verifier; no answer to unauthenticated senders
        handler = self.handlers.get(cmd.name)
        if handler is None:
            accepted, detail = False, f"no handler for command {cmd.name!r} on this gateway"
        else:
            try:
                accepted, detail = True, handler(cmd)
            except LewsError as exc:
                accepted, detail = False, str(exc)
        self.enqueue(
            "cmd_result", self.factory.cmd_result(cmd.name, cmd.nonce, accepted=accepted, detail=detail)
        )

    # --- introspection ------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "outbox": self.outbox.stats(),
            "link": self.link.stats(),
            "commands": None if self.verifier is None else self.verifier.counters(),
            "degraded": dict(self.counters),
        }
