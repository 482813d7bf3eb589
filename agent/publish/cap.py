"""CAP 1.2 (OASIS Common Alerting Protocol) XML for alert lifecycle events.

Mapping (data, below): level -> urgency / severity / certainty / responseType; event type -> msgType
(trigger: Alert, update/acknowledge: Update, resolve: Cancel). Update and Cancel carry <references>
to every earlier CAP message of the same alert ("sender,identifier,sent" separated by spaces).
Element order follows the CAP 1.2 XML schema (sequences).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.compat import UTC
from agent.errors import PublishError
from agent.publish.payloads import LEVEL_NAMES
from agent.publish.settings import CapSettings

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

# level -> (urgency, severity, certainty if only forecast/modelled, responseType)
LEVEL_MAP: dict[int, tuple[str, str, str, str]] = {
    0: ("Past", "Minor", "Unlikely", "AllClear"),
    1: ("Future", "Minor", "Possible", "Monitor"),
    2: ("Expected", "Moderate", "Likely", "Prepare"),
    3: ("Immediate", "Severe", "Likely", "Evacuate"),
}
MSG_TYPES: dict[str, str] = {
    "trigger": "Alert",
    "update": "Update",
    "acknowledge": "Update",
    "resolve": "Cancel",
}
HEADLINES: dict[int, str] = {
    0: "Landslide warning lifted",
    1: "Landslide advisory: slope movement above normal",
    2: "Landslide watch: be prepared to leave",
    3: "LANDSLIDE WARNING: evacuate now",
}
INSTRUCTIONS: dict[int, str] = {
    0: "The alert is over. Follow the instructions of local authorities.",
    1: "Stay informed. No action needed yet.",
    2: "Prepare to evacuate. Keep away from the slope and the runout area.",
    3: "Evacuate the danger area now by the designated routes. Do not return until the all-clear.",
}


def cap_time(t: float) -> str:
    """CAP dateTime: no 'Z' allowed; UTC is written +00:00, whole seconds."""
    return datetime.fromtimestamp(int(t), tz=UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass(frozen=True, slots=True)
class CapMessage:
    identifier: str
    sender: str
    sent: str
    xml: bytes

    @property
    def reference(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"


def build_cap(
    cfg: CapSettings,
    *,
    site: str,
    node: str,
    identifier: str,
    event_type: str,
    level: int,
    t: float,
    observed: bool,
    references: Sequence[str] = (),
    description: str = "",
    parameters: Mapping[str, str] | None = None,
) -> CapMessage:
    """One CAP <alert>. ``observed``: the level rests on measured evidence (wire trip, measured motion)
    -> certainty Observed; otherwise (forecast, thresholds on models) the table's certainty."""
    if event_type not in MSG_TYPES:
        raise PublishError(
            f"CAP: event type {event_type!r} is unknown", fix=f"use one of {sorted(MSG_TYPES)}"
        )
    if level not in LEVEL_MAP:
        raise PublishError(f"CAP: level {level!r} is not 0..3", fix="levels are 0 normal .. 3 warning")
    msg_type = MSG_TYPES[event_type]
    if msg_type != "Alert" and not references:
        msg_type = "Alert"  # CAP: Update/Cancel must reference an earlier message; none known -> new Alert
    urgency, severity, certainty, response = LEVEL_MAP[0 if event_type == "resolve" else level]
    if observed and event_type != "resolve":
        certainty = "Observed"
    sender = cfg.sender or f"lews-agent@{node}.{site}"
    sent = cap_time(t)

    ET.register_namespace("", CAP_NS)
    root = ET.Element(_q("alert"))
    _sub(root, "identifier", identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", sent)
    _sub(root, "status", cfg.status)
    _sub(root, "msgType", msg_type)
    _sub(root, "source", f"lews-agent {site}/{node}")
    _sub(root, "scope", cfg.scope)
    if cfg.scope == "Restricted":
        _sub(root, "restriction", cfg.restriction or "")
    if msg_type != "Alert":
        _sub(root, "references", " ".join(references))
    info = ET.SubElement(root, _q("info"))
    _sub(info, "language", cfg.language)
    _sub(info, "category", "Geo")
    _sub(info, "event", "Landslide")
    _sub(info, "responseType", response)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", certainty)
    _sub(info, "effective", sent)
    _sub(info, "expires", cap_time(t + cfg.expires_h * 3600.0))
    _sub(info, "senderName", cfg.sender_name)
    shown = 0 if event_type == "resolve" else level
    _sub(info, "headline", HEADLINES[shown])
    _sub(info, "description", description or f"Alert level {level} ({LEVEL_NAMES[level]}) at site {site}.")
    _sub(info, "instruction", INSTRUCTIONS[shown])
    for name, value in {"LEWS_LEVEL": str(level), "LEWS_EVENT": event_type, **(parameters or {})}.items():
        param = ET.SubElement(info, _q("parameter"))
        _sub(param, "valueName", name)
        _sub(param, "value", value)
    area = ET.SubElement(info, _q("area"))
    _sub(area, "areaDesc", cfg.area_desc or f"site {site}")
    if cfg.latitude is not None and cfg.longitude is not None:
        _sub(area, "circle", f"{cfg.latitude:.6f},{cfg.longitude:.6f} {cfg.radius_km:g}")
    xml = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return CapMessage(identifier=identifier, sender=sender, sent=sent, xml=xml)


def _q(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag))
    el.text = text
    return el
