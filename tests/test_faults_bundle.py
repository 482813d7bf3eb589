"""A model bundle replaced by a corrupt one while the daemon runs (signed demo bundle, real broker).

A/B slots live under ``state_dir/bundles`` (agent/inference/ab.py). Corruption of the ACTIVE slot on
disk does not disturb the running session (the verified graph is in memory); at the next start the
manager must refuse the corrupt slot and fall back to the previous slot, or to rules-only when there is
none, and say so in status (``fallback_reasons``, ``update``). ``agent bundle install`` of a tampered
bundle is covered by tests/test_daemon_riskmap_update.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker

from agent.config import config_from_dict
from agent.daemon import Daemon

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "bundles" / "demo"
PUBKEY = REPO / "bundles" / "demo-keys" / "signing.pub"


def _config(tmp_path: Path, broker: Broker) -> dict[str, Any]:
    return {
        "site": {"site": "bundle-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.1},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "inference": {"bundle_dir": str(BUNDLE), "public_key": str(PUBKEY)},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        },
    }


def _slots(tmp_path: Path) -> Path:
    return tmp_path / "state" / "bundles"


def _active(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_slots(tmp_path) / "active.json").read_text("utf-8"))
    return data


def _corrupt(slot_dir: Path) -> None:
    """A same-size overwrite of the model graph: a flipped-bits storage fault or a malicious edit."""
    onnx = slot_dir / "displacement.fp32.onnx"
    size = onnx.stat().st_size
    onnx.write_bytes(b"\x5a" * size)


def _run_briefly(daemon: Daemon, evaluations: int = 3) -> None:
    deadline = time.monotonic() + 20
    while daemon.counters["evaluations"] < evaluations and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.counters["evaluations"] >= evaluations


def _status_file(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "state" / "status.json").read_text("utf-8"))
    return data


def test_corrupt_active_slot_falls_back_to_previous_then_rules_only(
    tmp_path: Path, mosquitto: Broker
) -> None:
    cfg = config_from_dict(_config(tmp_path, mosquitto))
    # 1st run: slot a from bundle_dir; an update makes slot b active with a as previous.
    d1 = Daemon(cfg)
    d1.start()
    try:
        assert d1.models.mode == "onnxruntime"
        d1.models.stage_update(BUNDLE)
        d1.models.try_switch(lambda: True)  # or the daemon's evaluate loop switches first (site at level 0)
        deadline = time.monotonic() + 20
        while d1.models.status()["update"].get("state") not in ("probation", "committed"):
            assert time.monotonic() < deadline, d1.models.status()["update"]
            time.sleep(0.05)
        assert _active(tmp_path)["slot"] == "b" and _active(tmp_path)["previous"] == "a"
        # the active slot is corrupted on disk while running: the verified session keeps working
        _corrupt(_slots(tmp_path) / "slot-b")
        before = d1.counters["evaluations"]
        _run_briefly(d1, before + 3)
        assert d1.models.mode == "onnxruntime" and d1.fatal is None
    finally:
        d1.stop()

    # 2nd run: slot b fails verification -> previous slot a, and status says why.
    d2 = Daemon(cfg)
    d2.start()
    try:
        st = d2.models.status()
        assert st["mode"] == "onnxruntime"
        assert st["bundle_dir"] == str(_slots(tmp_path) / "slot-a")
        assert st["update"]["state"] == "rolled_back"
        assert any("slot-b" in r and "rejected" in r for r in st["fallback_reasons"]), st["fallback_reasons"]
        assert _active(tmp_path)["slot"] == "a"
        _run_briefly(d2)
        published = _status_file(tmp_path)["inference"]
        assert published["mode"] == "onnxruntime" and published["fallback_reasons"]
    finally:
        d2.stop()

    # 3rd run: both slots corrupt -> rules-only (the warning rules and the wire keep running), said so.
    _corrupt(_slots(tmp_path) / "slot-a")
    d3 = Daemon(cfg)
    d3.start()
    try:
        assert d3.models.mode == "rules_only"
        _run_briefly(d3)
        published = _status_file(tmp_path)["inference"]
        assert published["mode"] == "rules_only"
        reasons = " ".join(published["fallback_reasons"])
        assert "slot-a" in reasons and "rejected" in reasons
        assert d3.fatal is None
        assert d3.publisher.stats()  # the publisher is up in rules-only mode
    finally:
        d3.stop()


def test_corrupt_active_json_does_not_stop_the_agent(tmp_path: Path, mosquitto: Broker) -> None:
    cfg = config_from_dict(_config(tmp_path, mosquitto))
    d1 = Daemon(cfg)
    d1.start()
    d1.stop()
    (_slots(tmp_path) / "active.json").write_text('{"slot": "a", "previ')  # torn write / bad sector
    d2 = Daemon(cfg)
    d2.start()
    try:
        st = d2.models.status()
        assert st["mode"] in ("onnxruntime", "rules_only")
        assert any("active.json" in r for r in st["fallback_reasons"]), st["fallback_reasons"]
    finally:
        d2.stop()
