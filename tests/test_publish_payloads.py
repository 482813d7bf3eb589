"""Payload builders against the JSON Schemas in agent/schemas/, CAP 1.2 structure, topics."""

from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.engines import T0, engine_lifecycle, engine_wire_trip
from jsonschema import Draft202012Validator

from agent.compat import UTC
from agent.errors import ConfigError, PublishError
from agent.publish import schemas
from agent.publish.cap import CAP_NS, LEVEL_MAP, build_cap
from agent.publish.payloads import PayloadFactory, dumps, iso_z, parse_iso_z
from agent.publish.settings import CapSettings
from agent.publish.topics import TOPICS, command_name, topic_for
from agent.warning.engine import WarningEngine
from agent.warning.inputs import Snapshot, WireInput, WireState
from agent.warning.settings import WarningSettings


def factory() -> PayloadFactory:
    return PayloadFactory("urbas", "gw-1", "0.1.0", clock=lambda: T0)


def all_payloads() -> dict[str, dict[str, Any]]:
    f = factory()
    wire = engine_wire_trip()
    return {
        "status": f.status("online", backend="onnxruntime", started_at=T0 - 3600, outbox={"depth": 0}),
        "alert": f.alert(int(wire.published_level), wire.explanation, alert_id=wire.alert_id),
        "alert_event": f.alert_event(wire.events[0]),
        "forecast": f.forecast(
            valid_from=T0,
            horizon_s=86400,
            predicted_mm={"disp_e_mm": 12.5, "disp_n_mm": float("nan")},
            exceedance=[{"threshold_mm": 10.0, "probability": 0.4, "level": "watch"}],
            level=1,
            model_version="m1",
            backend="onnxruntime",
            completeness=0.75,
            thresholds_mm={"watch": 10.0},
        ),
        "telemetry": f.telemetry(
            "rain", {"rain.mm": 1.2}, window_start=T0 - 3600, window_end=T0, completeness=1.0, count=60
        ),
        "wire": f.wire(1, changed_at=T0, level=3),
        "riskmap": f.riskmap({"tiles": 4, "lsi_max": 0.91}, level=1, model_version="u1", completeness=1.0),
        "cmd_result": f.cmd_result("ack", "n" * 16, accepted=True, detail="ok"),
    }


def test_every_schema_is_valid_draft_2020_12() -> None:
    for name in schemas.PAYLOAD_SCHEMAS:
        doc = json.loads(schemas.schema_path(name).read_text())
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(doc)


def test_every_builder_output_validates_and_roundtrips_json() -> None:
    payloads = all_payloads()
    assert set(payloads) == {s.schema for s in TOPICS.values() if s.schema}
    for name, p in payloads.items():
        assert schemas.errors(name, p) == [], name
        again = json.loads(dumps(p))
        assert again == p
        assert again["time"].endswith("Z") and again["schema"] == f"lews.{name}"
        assert again["historical"] is False and len(again["msg_id"]) >= 8


def test_schemas_catch_wrong_payloads() -> None:
    p = all_payloads()
    bad_level = dict(p["alert"], level=4)
    assert any("level" in e for e in schemas.errors("alert", bad_level))
    no_node = {k: v for k, v in p["wire"].items() if k != "node"}
    assert any("node" in e for e in schemas.errors("wire", no_node))
    extra = dict(p["telemetry"], surprise=1)
    assert schemas.errors("telemetry", extra)
    naive_time = dict(p["status"], time="2026-11-22T10:00:00")
    assert schemas.errors("status", naive_time)
    wrong_kind = dict(p["forecast"], schema="lews.alert")
    assert schemas.errors("forecast", wrong_kind)
    # forecast schema v2 (docs/mqtt.md): exceedance is a list, the v1 object is refused
    assert p["forecast"]["schema_version"] == 2 and p["status"]["schema_version"] == 1
    assert schemas.errors("forecast", dict(p["forecast"], exceedance={"watch": 0.4}))
    assert schemas.errors("status", dict(p["status"], schema_version=2))
    with pytest.raises(PublishError, match=r"alert payload does not follow alert\.schema\.json"):
        schemas.validate("alert", bad_level)


def test_non_finite_values_become_null_and_bad_inputs_are_refused() -> None:
    p = all_payloads()["forecast"]
    assert p["predicted_mm"]["disp_n_mm"] is None
    f = factory()
    with pytest.raises(PublishError, match="level"):
        f.alert(5, {}, alert_id=None)
    with pytest.raises(PublishError, match="fraction"):
        f.telemetry("rain", {}, window_start=0, window_end=1, completeness=1.5)
    with pytest.raises(PublishError, match="wire state"):
        f.wire(9, changed_at=T0, level=0)
    ev = engine_wire_trip().events[0].to_dict()
    with pytest.raises(PublishError, match="event type"):
        f.alert_event({**ev, "kind": "explode"})
    with pytest.raises(PublishError, match="not an AlertEvent"):
        f.alert_event({"kind": "trigger"})
    with pytest.raises(PublishError, match="cannot be published as JSON"):
        f.alert(1, {"obj": object()}, alert_id=None)


def test_engine_lifecycle_payloads_validate_and_link() -> None:
    _eng, results, ack = engine_lifecycle()
    f = factory()
    events = [results[0].events[0], results[1].events[0], ack, results[2].events[0]]
    payloads = [f.alert_event(e) for e in events]
    for p in payloads:
        assert schemas.errors("alert_event", p) == []
    assert [p["event_type"] for p in payloads] == ["trigger", "update", "acknowledge", "resolve"]
    assert [p["prev_event_id"] for p in payloads] == [None, *(p["event_id"] for p in payloads[:-1])]
    assert len({p["alert_id"] for p in payloads}) == 1
    assert payloads[0]["level"] == 1 and payloads[1]["level"] == 2 and payloads[3]["level"] == 0
    assert payloads[0]["time"] == events[0].to_dict()["time"]  # the event's own time
    assert "velocity" in payloads[0]["summary"] and payloads[0]["completeness"] == 1.0
    assert payloads[2]["event"]["acknowledged_by"] == "ops-maria"
    current = f.alert(0, results[2].explanation, alert_id=None)
    assert schemas.errors("alert", current) == [] and current["level_name"] == "normal"
    # the engine's nested shape is enforced: a source without its level is refused
    broken = json.loads(json.dumps(payloads[0]))
    del broken["event"]["explanation"]["sources"][0]["level"]
    assert any("level" in e for e in schemas.errors("alert_event", broken))


def test_mark_historical_is_age_based_and_json_only() -> None:
    from agent.publish.outbox import OutboundMessage
    from agent.publish.transport import mark_historical

    p = all_payloads()["telemetry"]
    msg = OutboundMessage("t", dumps(p), 1, False, 2, True, p["msg_id"], created=T0)
    assert mark_historical(msg, T0 + 4.9, after_s=5.0) is None
    marked = mark_historical(msg, T0 + 65.5, after_s=5.0)
    assert marked is not None
    doc = json.loads(marked)
    assert doc["historical"] is True and doc["queued_s"] == 65.5 and doc["original_time"] == iso_z(T0)
    assert doc["msg_id"] == p["msg_id"] and doc["time"] == p["time"]  # same message, same id
    assert schemas.errors("telemetry", doc) == []
    xml = OutboundMessage("cap", b"<alert/>", 1, True, 0, False, "c1", "application/cap+xml", created=T0)
    assert mark_historical(xml, T0 + 100, after_s=5.0) is None


def test_time_format_roundtrip() -> None:
    assert iso_z(0) == "1970-01-01T00:00:00.000Z"
    assert parse_iso_z(iso_z(T0 + 0.123)) == pytest.approx(T0 + 0.123, abs=1e-3)
    with pytest.raises(ValueError):
        parse_iso_z("2026-11-22T10:00:00")


def test_topics() -> None:
    assert topic_for("telemetry", "urbas", "gw-1", "rain") == "lews/v1/urbas/gw-1/telemetry/rain"
    assert topic_for("alert_event", "urbas", "gw-1") == "lews/v1/urbas/gw-1/alert/event"
    assert TOPICS["alert"].retain and not TOPICS["alert_event"].retain
    assert all(not s.droppable for s in TOPICS.values() if s.priority == 0)
    for bad in ("a/b", "+", "#", "", "x" * 70):
        with pytest.raises(ConfigError):
            topic_for("status", bad, "gw")
    assert command_name("lews/v1/urbas/gw-1/cmd/ack", "urbas", "gw-1") == "ack"
    assert command_name("lews/v1/urbas/gw-1/cmd/ack/x", "urbas", "gw-1") is None
    assert command_name("lews/v1/other/gw-1/cmd/ack", "urbas", "gw-1") is None


def test_docs_list_every_topic() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "mqtt.md").read_text()
    for spec in TOPICS.values():
        assert f"`{spec.suffix}`" in doc, spec.suffix
        if spec.schema:
            assert f"{spec.schema}.schema.json" in doc


def _cap(event_type: str, level: int, refs: list[str], cfg: CapSettings | None = None) -> ET.Element:
    msg = build_cap(
        cfg or CapSettings(latitude=46.3, longitude=13.9, radius_km=2.0),
        site="urbas",
        node="gw-1",
        identifier=f"lews-urbas-gw-1-{event_type}",
        event_type=event_type,
        level=level,
        t=T0,
        observed=event_type == "trigger",
        references=refs,
    )
    root = ET.fromstring(msg.xml)
    assert msg.reference == f"{msg.sender},{msg.identifier},{msg.sent}"
    return root


ALERT_ORDER = ["identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
               "addresses", "code", "note", "references", "incidents", "info"]  # fmt: skip
INFO_ORDER = ["language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
              "eventCode", "effective", "onset", "expires", "senderName", "headline", "description",
              "instruction", "web", "contact", "parameter", "resource", "area"]  # fmt: skip


def _tags(el: ET.Element) -> list[str]:
    return [c.tag.replace(f"{{{CAP_NS}}}", "") for c in el]


def _in_order(tags: list[str], order: list[str]) -> bool:
    idx = [order.index(t) for t in tags]
    return idx == sorted(idx)


def test_cap_alert_structure_and_mapping() -> None:
    root = _cap("trigger", 3, [])
    assert root.tag == f"{{{CAP_NS}}}alert"
    ns = {"c": CAP_NS}
    assert _in_order(_tags(root), ALERT_ORDER)
    info = root.find("c:info", ns)
    assert info is not None and _in_order(_tags(info), INFO_ORDER)
    get = lambda p: root.findtext(p, namespaces=ns)  # noqa: E731
    assert get("c:msgType") == "Alert" and get("c:status") == "Actual" and get("c:scope") == "Public"
    assert get("c:references") is None
    assert get("c:info/c:category") == "Geo"
    assert (get("c:info/c:urgency"), get("c:info/c:severity")) == LEVEL_MAP[3][:2]
    assert get("c:info/c:certainty") == "Observed"
    assert get("c:info/c:responseType") == "Evacuate"
    assert get("c:info/c:area/c:circle") == "46.300000,13.900000 2"
    sent = get("c:sent")
    assert sent is not None and sent.endswith("+00:00") and "Z" not in sent
    assert datetime.fromisoformat(sent) == datetime.fromtimestamp(int(T0), tz=UTC)
    for must in ("identifier", "sender", "sent", "status", "msgType", "scope"):
        assert get(f"c:{must}"), must
    for must in ("category", "event", "urgency", "severity", "certainty"):
        assert get(f"c:info/c:{must}"), must


def test_cap_update_and_cancel_reference_earlier_messages() -> None:
    ns = {"c": CAP_NS}
    up = _cap("update", 2, ["s,i1,t1"])
    assert up.findtext("c:msgType", namespaces=ns) == "Update"
    assert up.findtext("c:references", namespaces=ns) == "s,i1,t1"
    assert up.findtext("c:info/c:certainty", namespaces=ns) == "Likely"
    cancel = _cap("resolve", 0, ["s,i1,t1", "s,i2,t2"])
    assert cancel.findtext("c:msgType", namespaces=ns) == "Cancel"
    assert cancel.findtext("c:references", namespaces=ns) == "s,i1,t1 s,i2,t2"
    assert cancel.findtext("c:info/c:responseType", namespaces=ns) == "AllClear"
    # without a known earlier message an update cannot reference it: it becomes a new Alert
    assert _cap("update", 2, []).findtext("c:msgType", namespaces=ns) == "Alert"
    restricted = _cap("trigger", 1, [], CapSettings(scope="Restricted", restriction="civil protection only"))
    assert restricted.findtext("c:restriction", namespaces=ns) == "civil protection only"
    with pytest.raises(ValueError):
        CapSettings(scope="Restricted")


def test_telemetry_from_real_lamosano_rain_validates(shared_data: Path) -> None:
    """Hourly rain of the Lamosano landslide (Nava et al. 2023; shared/data/lamosano-italy) -> payloads."""
    rows = list(csv.DictReader((shared_data / "lamosano-italy" / "rain_hourly.csv").open()))[:72]
    f = factory()
    for row in rows:
        t = datetime.strptime(row["date"], "%d/%m/%Y %H:%M").replace(tzinfo=UTC).timestamp()
        value = float(row["rain"]) if row["rain"] not in ("", "NA") else math.nan
        p = f.telemetry(
            "rain", {"rain.mm": value}, window_start=t, window_end=t + 3600, completeness=1.0, count=1
        )
        assert schemas.errors("telemetry", p) == []
        assert p["window_start"].startswith(row["date"][6:10])


def test_wire_alert_names_its_sensors_expires_and_carries_no_model() -> None:
    """A wire trip with a (quiet) forecast beside it: the alert names the bridge port behind `wire`,
    expires after the engine's validity for level 3, and has no model_version (no model set the level)."""
    from agent.publish.sensor_ids import sensor_identities
    from agent.sensors.settings import SensorsConfig
    from agent.warning.inputs import ForecastInput

    settings = WarningSettings()
    sensors = SensorsConfig.model_validate(
        {
            "ports": [
                {"name": "gnss0", "path": "/dev/serial/by-id/ublox", "kind": "gnss", "station": "URB1"},
                {"name": "mcu", "path": "/dev/serial/by-id/ftdi-A1", "kind": "bridge"},
            ],
            "gnss": {"reference": {"lat": 46.0, "lon": 14.5, "h_m": 400.0}},
        }
    )
    validity = {lvl: settings.alert.validity_s.for_level(lvl) for lvl in (1, 2, 3)}
    f = PayloadFactory("urbas", "gw-1", "0.1.0", clock=lambda: T0, sensors=sensor_identities(sensors),
                       validity_s=validity)  # fmt: skip
    eng = WarningEngine(settings, "urbas")
    quiet_fc = ForecastInput(0.1, T0, "displacement", "2.1.0", 1.0)
    eng.evaluate(Snapshot("urbas", wire=WireInput(WireState.INTACT, T0, T0 - 60), forecast=quiet_fc), T0)
    trip = eng.evaluate(
        Snapshot("urbas", wire=WireInput(WireState.TRIPPED, T0 + 1, T0 + 1), forecast=quiet_fc), T0 + 1
    )
    assert int(trip.published_level) == 3
    for name, p in (("alert", f.alert(3, trip.explanation, alert_id=trip.alert_id, t=T0 + 1)),
                    ("alert_event", f.alert_event(trip.events[0]))):  # fmt: skip
        assert schemas.errors(name, p) == [], name
        exp = p["explanation"] if name == "alert" else p["event"]["explanation"]
        assert p["model_version"] is None, exp["models"]  # the forecast did not set the level
        assert exp["models"] == {"forecast": "displacement@2.1.0"}  # still shown per source
        assert parse_iso_z(p["expires"]) == pytest.approx(T0 + 1 + validity[3])
        assert p["sensors"]["wire"] == [
            {"port": "mcu", "device": "/dev/serial/by-id/ftdi-A1", "kind": "bridge", "station": None}
        ]
        assert p["sensors"]["forecast"][0]["station"] == "URB1"
    normal = f.alert(0, eng.evaluate(Snapshot("urbas", wire=WireInput(WireState.INTACT, T0 + 9, T0 + 9)),
                                     T0 + 9).explanation, alert_id=None)  # fmt: skip
    assert normal["expires"] is None
