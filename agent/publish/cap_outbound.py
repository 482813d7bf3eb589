"""The CAP 1.2 message of one alert event, wrapped for the outbox (with its reference chain)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.publish.cap import build_cap
from agent.publish.outbox import OutboundMessage
from agent.publish.settings import CapSettings
from agent.publish.topics import TOPICS, topic_for

# Sources whose level rests on measurements of the slope itself: CAP certainty "Observed".
OBSERVED_SOURCES = frozenset({"wire", "velocity", "inverse_velocity", "seismic"})


def cap_outbound(
    settings: CapSettings, site: str, node: str, ev: Mapping[str, Any], refs: Sequence[str], t: float
) -> tuple[OutboundMessage, str | None]:
    """The CAP message of the alert-event payload ``ev`` referencing ``refs``, and the alert's new
    reference chain (None once the alert is resolved)."""
    alert_id, kind = str(ev["alert_id"]), str(ev["event_type"])
    contributing = set(ev["event"]["explanation"].get("contributing") or [])
    cap = build_cap(
        settings,
        site=site,
        node=node,
        identifier=f"lews-{site}-{node}-{ev['msg_id']}",
        event_type=kind,
        level=int(ev["level"]),
        t=t,
        observed=bool(contributing & OBSERVED_SOURCES),
        references=list(refs),
        description=str(ev.get("summary") or ""),
        parameters={"LEWS_ALERT_ID": alert_id, "LEWS_EVENT_ID": str(ev["event_id"])},
    )
    spec = TOPICS["cap"]
    msg = OutboundMessage(
        topic=topic_for("cap", site, node),
        payload=cap.xml,
        qos=spec.qos,
        retain=spec.retain,
        priority=spec.priority,
        droppable=False,
        msg_id=cap.identifier,
        content_type=spec.content_type,
    )
    return msg, None if kind == "resolve" else " ".join([*refs, cap.reference])
