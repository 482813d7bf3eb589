"""Tests of the MQTT-side checks (helpers/mqtt_checks.py) and of the demo harness pieces they rely on."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from helpers.mqtt_checks import chain_problems, invalid_payloads, kind_of

from agent.compat import tomllib
from agent.config import config_from_dict
from agent.demo.harness import toml_text
from agent.demo.run import SimClock, demo_config_data
from agent.demo.scenario import START_UTC
from agent.publish.watch import Received


# ---- tests of the checks and of the harness pieces ---------------------------------------------------
def _event(seq: int, alert: str, kind: str, prev: str | None) -> dict[str, Any]:
    return {
        "seq": seq,
        "alert_id": alert,
        "event_id": f"{alert}.{seq}",
        "prev_event_id": prev,
        "event_type": kind,
    }


def test_chain_problems_finds_gaps_and_broken_links() -> None:
    good = [
        _event(1, "a", "trigger", None),
        _event(2, "a", "update", "a.1"),
        _event(3, "a", "resolve", "a.2"),
    ]
    good.append(_event(4, "b", "trigger", None))
    assert chain_problems(good) == []
    gap = [good[0], good[2]]
    assert any("gapless" in p for p in chain_problems(gap))
    assert any("links to a.2, expected a.1" in p for p in chain_problems(gap))
    second_trigger = [_event(1, "a", "trigger", None), _event(2, "a", "trigger", None)]
    assert any("links to None" in p for p in chain_problems(second_trigger))
    assert any("starts with update" in p for p in chain_problems([_event(1, "c", "update", "x.0")]))
    retrigger = [_event(1, "a", "trigger", None), _event(2, "b", "trigger", None)]
    assert any("while alert a was still open" in p for p in chain_problems(retrigger))


def test_toml_text_round_trips_the_demo_config(tmp_path: Path) -> None:
    data = demo_config_data(tmp_path, "127.0.0.1", 1883, "/dev/pts/98", "/dev/pts/99", 2.0e5)
    text = toml_text(data)
    back = tomllib.loads(text)
    assert back == data
    cfg = config_from_dict(back)
    assert [p.path for p in cfg.sensors.ports] == ["/dev/pts/98", "/dev/pts/99"]
    assert cfg.warning.wire.max_age_s >= 2 * 2.0e5  # scaled with the time compression


def test_sim_clock_anchor_is_shared_across_instances() -> None:
    anchor = time.time() + 0.2
    a, b = SimClock(1000.0, START_UTC, anchor_wall=anchor), SimClock(1000.0, START_UTC, anchor_wall=anchor)
    assert a() == START_UTC  # before the anchor: the scenario start
    time.sleep(0.3)
    ta, tb = a(), b()
    assert START_UTC + 50.0 < ta <= tb < START_UTC + 1000.0
    assert tb - ta < 5.0  # two processes with the same anchor agree to milliseconds


def test_invalid_payloads_reports_schema_errors() -> None:
    bad = Received("lews/v1/s/n/wire", b'{"schema": "lews.wire", "state": 9}', True, 0.0)
    assert invalid_payloads([bad])
    with pytest.raises(ValueError):
        kind_of("lews/v1/s/n/nonsense")
