"""The alert state machine: hysteresis, hold, validity, cooldown, lifecycle links, disagreement,
wire never masked (property test) and the JSON round trip of the state. Inputs are synthetic."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import AlertStateError
from agent.warning.engine import EvaluationResult, WarningEngine
from agent.warning.inputs import DisplacementInput, ForecastInput, Snapshot, WireInput, WireState
from agent.warning.levels import Level
from agent.warning.settings import WarningSettings
from agent.warning.state import AlertState

H = 3600.0
DAY = 86400.0
T0 = 1_750_000_000.0
SITE = "urbas"


def creep(rate_mm_day: float, now: float) -> DisplacementInput:
    """Synthetic constant-velocity creep over the 3 days before ``now`` (6-hourly points)."""
    t = np.arange(now - 3 * DAY, now + 1, DAY / 4)
    return DisplacementInput(t, rate_mm_day * (t - t[0]) / DAY, np.ones_like(t), float(t[-1]))


def snap(
    now: float,
    wire: WireState | None = WireState.INTACT,
    velocity: float | None = None,
    forecast_mm: float | None = None,
    wire_age: float = 0.0,
) -> Snapshot:
    fc = None
    if forecast_mm is not None:
        fc = ForecastInput(forecast_mm, now, "displacement", "1.0.0", 1.0)
    return Snapshot(
        SITE,
        wire=None if wire is None else WireInput(wire, now - wire_age, now - wire_age - 60),
        forecast=fc,
        displacement=None if velocity is None else creep(velocity, now),
    )


def engine(**alert: object) -> WarningEngine:
    cfg = WarningSettings.model_validate({"alert": alert}) if alert else WarningSettings()
    return WarningEngine(cfg, SITE)


def kinds(r: EvaluationResult) -> list[str]:
    return [e.kind for e in r.events]


def test_quiet_site_publishes_normal_without_events() -> None:
    eng = engine()
    r = eng.evaluate(snap(T0, velocity=0.1), T0)
    assert r.published_level == Level.NORMAL and r.events == [] and r.alert_id is None
    assert "Level 0 (normal)" in r.explanation.summary


def test_wire_trip_is_immediate_level_3_with_trigger() -> None:
    eng = engine()
    eng.evaluate(snap(T0), T0)
    r = eng.evaluate(snap(T0 + 1, wire=WireState.TRIPPED), T0 + 1)
    assert r.published_level == Level.WARNING and kinds(r) == ["trigger"]
    ev = r.events[0]
    assert ev.prev_event_id is None and ev.seq == 1 and ev.alert_id.startswith(f"{SITE}-")
    assert ev.event_id == f"{ev.alert_id}.1" and not set("/+#") & set(ev.event_id)
    assert ev.explanation.contributing == ["wire"] and "wire alarm tripped" in ev.explanation.summary
    json.dumps(ev.to_dict(), allow_nan=False)


def test_hysteresis_band_holds_then_lowers_step_by_step() -> None:
    eng = engine()
    assert eng.evaluate(snap(T0, velocity=5.5), T0).published_level == Level.WATCH
    t = T0 + 4 * H  # past the 3 h watch hold
    r = eng.evaluate(snap(t, velocity=4.5), t)  # below 5 but inside the band (>= 4): held
    assert r.published_level == Level.WATCH and r.events == []
    r = eng.evaluate(snap(t + 1, velocity=3.5), t + 1)  # below the band: lower to what is supported
    assert r.published_level == Level.ADVISORY and kinds(r) == ["update"]
    assert "hysteresis band" in r.events[0].explanation.cause
    r = eng.evaluate(snap(t + 2, velocity=0.5), t + 2)  # advisory hold (1 h) not over yet
    assert r.published_level == Level.ADVISORY
    r = eng.evaluate(snap(t + 1 * H + 1, velocity=0.5), t + 1 * H + 1)
    assert r.published_level == Level.NORMAL and kinds(r) == ["resolve"]


def test_minimum_hold_time() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=6.0), T0)
    for dt in (1.0, 1 * H, 2.99 * H):
        assert eng.evaluate(snap(T0 + dt, velocity=0.0), T0 + dt).published_level == Level.WATCH
    r = eng.evaluate(snap(T0 + 3 * H, velocity=0.0), T0 + 3 * H)
    assert r.published_level == Level.NORMAL and kinds(r) == ["resolve"]


def test_raise_is_immediate_inside_an_alert() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=1.5), T0)
    r = eng.evaluate(snap(T0 + 60, velocity=25.0), T0 + 60)
    assert r.published_level == Level.WARNING and kinds(r) == ["update"]


def test_validity_window_expires_an_unconfirmed_level() -> None:
    eng = engine()
    r0 = eng.evaluate(snap(T0, forecast_mm=6.0), T0)
    assert r0.published_level == Level.WATCH
    # the forecast stops arriving: no evidence that it fell, so the level is held past its hold time ...
    for dt in (4 * H, 12 * H, 25.9 * H):
        r = eng.evaluate(snap(T0 + dt, forecast_mm=None), T0 + dt)
        assert r.published_level == Level.WATCH and "forecast" in r.explanation.no_data
    # ... until the 26 h validity window runs out
    r = eng.evaluate(snap(T0 + 26 * H, forecast_mm=None), T0 + 26 * H)
    assert r.published_level == Level.NORMAL and kinds(r) == ["resolve"]
    assert "expired" in r.events[0].explanation.cause


def test_a_silent_site_never_expires_to_normal() -> None:
    """When every source goes quiet (the wire included), nothing says the danger is over: the level is
    held past the validity window and counted, and it expires only once some source reports again."""
    eng = engine()
    assert eng.evaluate(snap(T0, forecast_mm=6.0), T0).published_level == Level.WATCH
    for dt in (26 * H, 3 * DAY, 10 * DAY):
        r = eng.evaluate(snap(T0 + dt, wire=None, forecast_mm=None), T0 + dt)
        assert r.published_level == Level.WATCH and r.events == []
        assert {"wire", "forecast"} <= set(r.explanation.no_data)
    assert eng.state.counters["held_without_any_data"] == 3
    back = eng.evaluate(snap(T0 + 11 * DAY, forecast_mm=None), T0 + 11 * DAY)  # the wire reports again
    assert back.published_level == Level.NORMAL and kinds(back) == ["resolve"]


def test_reconfirmation_extends_validity() -> None:
    eng = engine()
    eng.evaluate(snap(T0, forecast_mm=6.0), T0)
    eng.evaluate(snap(T0 + 20 * H, forecast_mm=6.0), T0 + 20 * H)  # re-confirmed
    r = eng.evaluate(snap(T0 + 30 * H), T0 + 30 * H)
    assert r.published_level == Level.WATCH
    r = eng.evaluate(snap(T0 + 46 * H), T0 + 46 * H)
    assert r.published_level == Level.NORMAL


def test_cooldown_defers_low_retrigger_but_not_level_3_or_wire() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=1.5), T0)
    r = eng.evaluate(snap(T0 + 2 * H, velocity=0.0), T0 + 2 * H)
    assert kinds(r) == ["resolve"]
    first_alert = r.events[0].alert_id
    t = T0 + 3 * H  # inside the 6 h cooldown
    r = eng.evaluate(snap(t, velocity=6.0), t)
    assert r.published_level == Level.NORMAL and r.deferred_by_cooldown and r.events == []
    assert eng.state.counters["deferred_by_cooldown"] == 1
    r = eng.evaluate(snap(T0 + 8 * H + 1, velocity=6.0), T0 + 8 * H + 1)  # cooldown over, still there
    assert r.published_level == Level.WATCH and kinds(r) == ["trigger"]
    assert r.events[0].alert_id != first_alert
    # level 3 evidence and the wire ignore the cooldown
    for kw in ({"velocity": 25.0}, {"wire": WireState.TRIPPED}):
        e2 = engine()
        e2.evaluate(snap(T0, velocity=1.5), T0)
        assert kinds(e2.evaluate(snap(T0 + 2 * H, velocity=0.0), T0 + 2 * H)) == ["resolve"]
        r2 = e2.evaluate(snap(T0 + 3 * H, **kw), T0 + 3 * H)
        assert r2.published_level == Level.WARNING and kinds(r2) == ["trigger"], kw


def test_lifecycle_events_link_and_acknowledge() -> None:
    eng = engine()
    with pytest.raises(AlertStateError, match="no active alert"):
        eng.acknowledge("ops", T0)
    trig = eng.evaluate(snap(T0, velocity=1.5), T0).events[0]
    upd = eng.evaluate(snap(T0 + 60, velocity=6.0), T0 + 60).events[0]
    with pytest.raises(AlertStateError, match="is not the active alert"):
        eng.acknowledge("ops", T0 + 70, alert_id="other")
    with pytest.raises(AlertStateError, match="operator"):
        eng.acknowledge("  ", T0 + 70)
    ack = eng.acknowledge("ops-maria", T0 + 120, note="crew on the way", alert_id=trig.alert_id)
    assert eng.state.acknowledged_by == "ops-maria"
    res = eng.evaluate(snap(T0 + 4 * H, velocity=0.0), T0 + 4 * H).events[0]
    chain = [trig, upd, ack, res]
    assert [e.kind for e in chain] == ["trigger", "update", "acknowledge", "resolve"]
    assert [e.seq for e in chain] == [1, 2, 3, 4]
    assert {e.alert_id for e in chain} == {trig.alert_id}
    assert [e.prev_event_id for e in chain] == [None, trig.event_id, upd.event_id, ack.event_id]
    assert (
        ack.level == Level.WATCH and ack.acknowledged_by == "ops-maria" and "crew" in ack.explanation.summary
    )
    d = res.to_dict()
    assert d["kind"] == "resolve" and d["level"] == 0 and d["previous_level"] == 2 and d["time"].endswith("Z")
    assert eng.state.alert_id is None and eng.state.acknowledged_by is None


def test_raise_after_acknowledge_clears_it() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=1.5), T0)
    eng.acknowledge("ops", T0 + 1)
    eng.evaluate(snap(T0 + 2, velocity=6.0), T0 + 2)
    assert eng.state.acknowledged_by is None


def test_disagreement_wire_tripped_without_motion_keeps_level_3() -> None:
    eng = engine()
    r = eng.evaluate(snap(T0, wire=WireState.TRIPPED, velocity=0.0), T0)
    assert r.published_level == Level.WARNING
    assert r.disagreement is not None and r.disagreement.kind == "wire_tripped_no_motion"
    assert r.events[0].explanation.to_dict()["disagreement"]["kind"] == "wire_tripped_no_motion"
    # with motion, or without fresh GNSS, there is nothing to disagree about
    assert engine().evaluate(snap(T0, wire=WireState.TRIPPED, velocity=3.0), T0).disagreement is None
    assert engine().evaluate(snap(T0, wire=WireState.TRIPPED), T0).disagreement is None


def test_disagreement_strong_motion_with_wire_intact_is_an_update() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=6.0), T0)
    r = eng.evaluate(snap(T0 + 60, velocity=25.0), T0 + 60)
    assert r.disagreement is not None and r.disagreement.kind == "motion_wire_intact"
    assert r.published_level == Level.WARNING
    r = eng.evaluate(snap(T0 + 120, velocity=25.0), T0 + 120)
    assert r.events == []  # unchanged disagreement: no new event
    r = eng.evaluate(snap(T0 + 180, wire=WireState.TRIPPED, velocity=25.0), T0 + 180)
    assert r.disagreement is None and kinds(r) == ["update"]  # disagreement cleared: an update


def test_wire_fault_is_advisory_with_fault_flag() -> None:
    eng = engine()
    r = eng.evaluate(snap(T0, wire=WireState.OPEN_CIRCUIT), T0)
    assert r.published_level == Level.ADVISORY and r.explanation.faults == ["wire"]
    assert "Sensor fault: wire" in r.explanation.summary


def test_clock_backwards_is_counted_and_does_not_lower() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=6.0), T0)
    r = eng.evaluate(snap(T0 - 10 * H, velocity=0.0), T0 - 10 * H)
    assert r.published_level == Level.WATCH and eng.state.counters["clock_backwards"] == 1


def _timeline() -> list[Snapshot]:
    plan = [(0, None), (1, 1.5), (2, 6.0), (5, 6.0), (6, 25.0), (7, 0.0), (14, 0.0), (15, 0.0), (30, 0.0)]
    return [
        snap(T0 + h * H, velocity=v, wire=WireState.TRIPPED if h == 7 else WireState.INTACT) for h, v in plan
    ]


def test_state_json_round_trip_resumes_identically() -> None:
    steps = _timeline()
    straight = engine()
    ref = [straight.evaluate(s, s.wire.t if s.wire else T0) for s in steps]
    for cut in range(1, len(steps)):
        first = engine()
        out = [first.evaluate(s, s.wire.t if s.wire else T0) for s in steps[:cut]]
        text = first.state.to_json()
        assert AlertState.from_json(text).to_dict() == first.state.to_dict()
        resumed = WarningEngine.from_json(WarningSettings(), SITE, text)
        out += [resumed.evaluate(s, s.wire.t if s.wire else T0) for s in steps[cut:]]
        assert [r.published_level for r in out] == [r.published_level for r in ref]
        assert [[e.to_dict() for e in r.events] for r in out] == [
            [e.to_dict() for e in r.events] for r in ref
        ]


def test_restart_does_not_retrigger_and_does_not_lose_the_resolve() -> None:
    eng = engine()
    trig = eng.evaluate(snap(T0, velocity=6.0), T0).events[0]
    text = eng.state.to_json()
    again = WarningEngine.from_json(WarningSettings(), SITE, text)
    assert again.evaluate(snap(T0 + 60, velocity=6.0), T0 + 60).events == []
    # daemon down for two days; on restart the evidence has fallen: exactly one resolve, linked
    later = WarningEngine.from_json(WarningSettings(), SITE, text)
    r = later.evaluate(snap(T0 + 2 * DAY, velocity=0.0), T0 + 2 * DAY)
    assert kinds(r) == ["resolve"] and r.events[0].prev_event_id == trig.event_id


def test_bad_state_is_a_typed_error() -> None:
    with pytest.raises(AlertStateError, match="not JSON"):
        AlertState.from_json("{")
    with pytest.raises(AlertStateError, match="version"):
        AlertState.from_json('{"version": 99}')
    with pytest.raises(AlertStateError, match="malformed"):
        AlertState.from_json('{"version": 1, "site": "x"}')
    bad_level = AlertState(site=SITE).to_dict() | {"level": -1}
    with pytest.raises(AlertStateError, match="no_data"):
        AlertState.from_dict(bad_level)
    with pytest.raises(AlertStateError, match="belongs to site"):
        WarningEngine(WarningSettings(), "other", AlertState(site=SITE))
    with pytest.raises(AlertStateError, match="snapshot is for site"):
        engine().evaluate(Snapshot("elsewhere"), T0)


STEP = st.tuples(
    st.floats(min_value=0.0, max_value=30 * H),  # time advance
    st.sampled_from([*WireState, None]),
    st.one_of(st.none(), st.floats(min_value=-5.0, max_value=50.0)),  # velocity mm/day
    st.one_of(st.none(), st.floats(min_value=-1.0, max_value=30.0)),  # forecast mm
    st.booleans(),  # acknowledge
    st.floats(min_value=0.0, max_value=3 * H),  # age of the wire reading (stale beyond 300 s)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(STEP, min_size=1, max_size=12),
    st.integers(min_value=0, max_value=11),
    st.integers(min_value=1, max_value=3),
    st.floats(min_value=0.0, max_value=12 * H),
)
def test_wire_tripped_always_publishes_level_3(
    steps: list[tuple], restart_at: int, bypass: int, hold: float
) -> None:
    """Whatever else happens (other sources, stale readings, timing, acks, restarts, settings),
    a tripped wire publishes level 3 in the same evaluation."""
    holds = {"advisory": hold, "watch": hold, "warning": hold}
    eng = engine(cooldown_bypass_level=bypass, min_hold_s=holds, cooldown_s=hold)
    cfg = eng.settings
    now = T0
    last_seq = 0
    for i, (dt, wire, vel, fc, ack, wire_age) in enumerate(steps):
        now += dt
        if i == restart_at:
            eng = WarningEngine.from_json(cfg, SITE, eng.state.to_json())
        r = eng.evaluate(snap(now, wire=wire, velocity=vel, forecast_mm=fc, wire_age=wire_age), now)
        if wire is WireState.TRIPPED:
            assert r.published_level == Level.WARNING
        assert Level.NORMAL <= r.published_level <= Level.WARNING
        assert r.published_level >= (
            Level.NORMAL if r.deferred_by_cooldown else max(s.level for s in r.source_levels.values())
        )
        for e in r.events:
            assert e.seq == last_seq + 1
            last_seq = e.seq
            json.dumps(e.to_dict(), allow_nan=False)
        json.dumps(r.to_dict(), allow_nan=False)
        json.dumps(eng.state.to_dict(), allow_nan=False)
        if ack and eng.state.active:
            last_seq = eng.acknowledge("ops", now).seq


def test_explanation_model_version_and_overall_completeness() -> None:
    eng = engine()
    fc = ForecastInput(6.0, T0, "displacement", "2.1.0", 0.9)
    r = eng.evaluate(Snapshot(SITE, wire=WireInput(WireState.INTACT, T0, T0), forecast=fc,
                              displacement=creep(0.1, T0)), T0)  # fmt: skip
    d = r.events[0].to_dict()["explanation"]
    assert d["model_version"] == "displacement@2.1.0"
    assert d["overall_completeness"] == pytest.approx(0.9)  # forecast 0.9 < velocity 1.0
    quiet = engine().evaluate(snap(T0), T0).explanation
    assert quiet.model_version is None and quiet.overall_completeness is None


def test_same_level_updates_say_why() -> None:
    eng = engine()
    eng.evaluate(snap(T0, velocity=6.0), T0)
    r = eng.evaluate(snap(T0 + 60, wire=WireState.SHORT, velocity=6.0), T0 + 60)
    assert kinds(r) == ["update"] and r.events[0].explanation.cause == "sensor fault on wire"
    r = eng.evaluate(snap(T0 + 120, velocity=6.0), T0 + 120)
    assert kinds(r) == ["update"] and r.events[0].explanation.cause == "sensor fault cleared"
    r = eng.evaluate(snap(T0 + 180, velocity=25.0), T0 + 180)
    assert r.events[0].explanation.cause.startswith("raised by velocity")
    r = eng.evaluate(snap(T0 + 240, wire=WireState.TRIPPED, velocity=25.0), T0 + 240)
    assert r.events[0].explanation.cause == "wire alarm tripped; disagreement motion_wire_intact cleared"
    # a wire trip while already at 3 (no other flag change) is still its own update event
    e2 = engine()
    e2.evaluate(snap(T0, wire=None, forecast_mm=12.0), T0)  # no wire data: no disagreement either
    r = e2.evaluate(snap(T0 + 60, wire=WireState.TRIPPED, forecast_mm=12.0), T0 + 60)
    assert kinds(r) == ["update"] and r.events[0].explanation.cause == "wire alarm tripped"


@pytest.mark.faults
def test_a_broken_input_is_no_data_and_never_hides_the_wire() -> None:
    eng = engine()
    bad_fc = ForecastInput(6.0, T0, "displacement", "1", 1.0, exceedance=[5.0])  # type: ignore[arg-type]
    r = eng.evaluate(Snapshot(SITE, wire=WireInput(WireState.TRIPPED, T0, T0), forecast=bad_fc), T0)
    assert r.published_level == Level.WARNING
    fc = r.source_levels["forecast"]
    assert fc.level == Level.NO_DATA and fc.evidence["rule_error"] is True and "rule error" in fc.reason
    assert eng.state.counters["rule_errors"] == 1
    # a raw int state from a reader is understood; an unknown one is NO_DATA, not a crash
    r = engine().evaluate(Snapshot(SITE, wire=WireInput(1, T0, T0)), T0)  # type: ignore[arg-type]
    assert r.published_level == Level.WARNING
    r = engine().evaluate(Snapshot(SITE, wire=WireInput(7, T0, T0)), T0)  # type: ignore[arg-type]
    assert (
        r.source_levels["wire"].level == Level.NO_DATA
        and "unknown wire state" in r.source_levels["wire"].reason
    )
    # even if the wire rule itself fails (here: a time that is not a number), a raw trip still gives 3
    r = engine().evaluate(Snapshot(SITE, wire=WireInput(WireState.TRIPPED, "x", T0)), T0)  # type: ignore[arg-type]
    assert r.published_level == Level.WARNING and r.source_levels["wire"].evidence["rule_error"] is True


def test_wire_rearmed_holds_level_3_then_lowers() -> None:
    eng = engine()
    eng.evaluate(snap(T0, wire=WireState.TRIPPED), T0)
    r = eng.evaluate(snap(T0 + H, wire=WireState.INTACT), T0 + H)
    assert (
        r.published_level == Level.WARNING and r.events[0].explanation.cause == "wire alarm no longer tripped"
    )
    assert eng.evaluate(snap(T0 + 5.9 * H), T0 + 5.9 * H).published_level == Level.WARNING
    r = eng.evaluate(snap(T0 + 6 * H), T0 + 6 * H)
    assert r.published_level == Level.NORMAL and kinds(r) == ["resolve"]
