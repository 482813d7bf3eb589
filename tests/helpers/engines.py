"""Real warning-engine results to publish (SYNTHETIC creep / a wire trip) and a publisher for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.warning.engine import EvaluationResult, WarningEngine
from agent.warning.events import AlertEvent
from agent.warning.inputs import DisplacementInput, Snapshot, WireInput, WireState
from agent.warning.settings import WarningSettings

T0 = 1_763_800_000.0
DAY, H = 86400.0, 3600.0


def creep(rate_mm_day: float, now: float) -> DisplacementInput:
    """SYNTHETIC constant-velocity creep over the 3 days before ``now`` (6-hourly points)."""
    t = np.arange(now - 3 * DAY, now + 1, DAY / 4)
    return DisplacementInput(t, rate_mm_day * (t - t[0]) / DAY, np.ones_like(t), float(t[-1]))


def snapshot(
    site: str, now: float, wire: WireState = WireState.INTACT, velocity: float | None = None
) -> Snapshot:
    disp = None if velocity is None else creep(velocity, now)
    return Snapshot(site, wire=WireInput(wire, now, now - 60), displacement=disp)


def engine_lifecycle(
    site: str = "urbas", t0: float = T0
) -> tuple[WarningEngine, list[EvaluationResult], AlertEvent]:
    """Real warning-engine output on synthetic creep: trigger (1), update (2), acknowledge, resolve (0)."""
    eng = WarningEngine(WarningSettings(), site)
    trig = eng.evaluate(snapshot(site, t0, velocity=1.5), t0)
    upd = eng.evaluate(snapshot(site, t0 + 60, velocity=6.0), t0 + 60)
    ack = eng.acknowledge("ops-maria", t0 + 120, note="crew on the way")
    res = eng.evaluate(snapshot(site, t0 + 4 * H, velocity=0.0), t0 + 4 * H)
    assert [[e.kind for e in r.events] for r in (trig, upd, res)] == [["trigger"], ["update"], ["resolve"]]
    return eng, [trig, upd, res], ack


def engine_wire_trip(site: str = "urbas", t0: float = T0) -> EvaluationResult:
    """Real warning-engine output: the wire alarm trips -> level 3 trigger."""
    eng = WarningEngine(WarningSettings(), site)
    eng.evaluate(snapshot(site, t0), t0)
    r = eng.evaluate(snapshot(site, t0 + 1, wire=WireState.TRIPPED), t0 + 1)
    assert int(r.published_level) == 3 and [e.kind for e in r.events] == ["trigger"]
    return r


SITE, NODE = "lamosano", "gw-1"


def make_publisher(tmp_path: Path, port: int, **kw: Any) -> Publisher:
    handlers = kw.pop("handlers", None)
    settings = MqttSettings.model_validate(
        {"port": port, "outbox": {"path": str(tmp_path / "outbox.sqlite")}, "reconnect_max_s": 2, **kw}
    )
    return Publisher(
        settings, site=SITE, node=NODE, agent_version="0.1.0", backend="onnxruntime", handlers=handlers
    )
