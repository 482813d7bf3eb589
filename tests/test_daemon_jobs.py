"""The daemon as a composition of jobs: a failure in any job's construction or any component's start
leaves no thread behind and the store closed; supervised loops keep wake-ups, restart within the
budget and count it; the watchdog vouches only for real progress."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers.broker import Broker, free_port
from helpers.wait import wait_until as _wait_until

import agent.daemon as daemon_mod
from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.features.store import Store
from agent.jobs.scheduler import Lifecycle, Scheduler, Step
from agent.jobs.supervise import RestartBudget, SupervisedLoop, write_json_atomic

REPO = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, port: int, **daemon: Any) -> dict[str, Any]:
    return {
        "site": {"site": "jobs-site", "node": "gw1"},
        "daemon": {"state_dir": str(tmp_path / "state"), "evaluate_interval_s": 0.05, **daemon},
        "store": {"path": str(tmp_path / "store.sqlite")},
        "inference": {
            "bundle_dir": str(tmp_path / "none"),
            "public_key": str(REPO / "bundles" / "demo-keys" / "signing.pub"),
        },
        "web": {"enabled": True, "port": 0},
        "mqtt": {"host": "127.0.0.1", "port": port, "outbox": {"path": str(tmp_path / "outbox.sqlite")}},
    }


class Boom(RuntimeError):
    pass


def _boom(*_a: Any, **_k: Any) -> None:
    raise Boom("injected")


# Every job and component the daemon composes: (name in agent.daemon, attribute that fails)
CONSTRUCTED = [
    "Store", "ModelManager", "Forecaster", "History", "Publisher", "ForecastJob", "RiskMapJob",
    "WireMirror", "EvaluationJob", "ModelUpdatesJob", "DiskJob", "StatusJob", "TelemetryJob",
    "Pipeline", "Scheduler", "WatchdogJob",
]  # fmt: skip
STARTED = [
    ("Store", "start"),
    ("ModelManager", "start"),
    ("WireMirror", "restore"),
    ("Publisher", "start"),
    ("Pipeline", "start"),
    ("Scheduler", "start"),
    ("StatusServer", "start"),
]


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> list[Store]:
    """Every Store the daemon opens (to check it was closed)."""
    made: list[Store] = []

    class Recording(Store):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(daemon_mod, "Store", Recording)
    return made


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


@pytest.mark.parametrize("name", CONSTRUCTED)
def test_a_failing_construction_leaks_no_thread_and_closes_the_store(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[Store]
) -> None:
    cls = getattr(daemon_mod, name)
    if name != "Store":
        monkeypatch.setattr(cls, "__init__", _boom)
    else:
        monkeypatch.setattr(cls, "_open_writer", _boom)  # the recording subclass still records
    before = _threads()
    with pytest.raises(Boom):
        Daemon(config_from_dict(_config(tmp_path, free_port())))
    assert _wait_until(lambda: _threads() <= before), _threads() - before
    if name != "Store":  # everything else is built after the store: it was opened, and closed again
        assert stores and all(s.closed for s in stores)


@pytest.mark.parametrize(("name", "method"), STARTED)
def test_a_failing_start_stops_what_started_leaks_no_thread_and_closes_the_store(
    name: str, method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[Store]
) -> None:
    cls = getattr(daemon_mod, name)
    before = _threads()
    daemon = Daemon(config_from_dict(_config(tmp_path, free_port())))
    assert _threads() <= before, "the constructor started a thread"
    monkeypatch.setattr(cls, method, _boom)
    with pytest.raises(Boom):
        daemon.start()
    assert _wait_until(lambda: _threads() <= before), _threads() - before
    assert stores and all(s.closed for s in stores)
    daemon.stop()  # still safe after a failed start


def test_start_and_stop_leave_no_thread(tmp_path: Path, mosquitto: Broker, stores: list[Store]) -> None:
    before = _threads()
    daemon = Daemon(config_from_dict(_config(tmp_path, mosquitto.port)))
    daemon.start()
    try:
        assert _wait_until(lambda: daemon.counters["evaluations"] >= 3)
        names = {t.name for t in _threads() - before}
        assert {"store-writer", "evaluate", "telemetry", "mqtt-sender", "mqtt-status", "status-page"} <= names
    finally:
        daemon.stop()
    assert _wait_until(lambda: _threads() <= before), _threads() - before
    assert stores[0].closed
    status = json.loads((tmp_path / "state" / "status.json").read_text())  # written at stop
    assert status["worker_restarts"] == 0 and status["max_worker_restarts"] == 5


# ---- the pieces ---------------------------------------------------------------------------------------
def test_a_wake_during_a_run_is_not_lost() -> None:
    """A wake-up that arrives while the body runs makes the next run start at once (the old
    wait-then-clear dropped it and slept the whole interval)."""
    started, release = threading.Event(), threading.Event()
    runs: list[float] = []

    def body() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            started.set()
            release.wait(5)

    loop = SupervisedLoop("wake-test", body, 60.0, lambda _r: None)
    loop.start()
    try:
        assert started.wait(5)
        loop.wake()  # arrives while the first run is still in the body
        release.set()
        assert _wait_until(lambda: len(runs) >= 2, 5.0), "the wake-up was lost: no second run"
    finally:
        loop.stop()
    assert not loop.alive


def test_a_failing_worker_is_restarted_within_the_budget_then_fatal() -> None:
    fatal: list[str] = []
    budget = RestartBudget(2)
    loop = SupervisedLoop("crash-test", _boom, 0.001, fatal.append, max_failures=1, budget=budget)
    loop.start()
    try:
        assert _wait_until(lambda: bool(fatal), 10.0)
    finally:
        loop.stop()
    assert loop.restarts == 2 and budget.total == 2
    assert "budget" in fatal[0] and "crash-test" in fatal[0]


def test_an_optional_step_failure_never_stops_the_loop() -> None:
    runs: list[int] = []
    sched = Scheduler(lambda r: runs.append(-1), max_restarts=0, max_failures=1)
    sched.every("opt", 0.001, [Step("broken", lambda: _boom()), Step("work", lambda: runs.append(1), True)])
    sched.start()
    try:
        assert _wait_until(lambda: len(runs) >= 20)
    finally:
        sched.stop()
    assert -1 not in runs and sched.step_failures["broken"] >= 20
    assert sched.stats()["opt"]["failures"] == 0


def test_lifecycle_stops_in_reverse_and_every_stop_runs() -> None:
    order: list[str] = []
    life = Lifecycle()
    life.start("a", lambda: None, lambda: order.append("a"))

    def failing_stop() -> None:
        order.append("b")
        _boom()

    life.owns("b", failing_stop)
    life.start("c", lambda: None, lambda: order.append("c"))
    life.stop_all()
    assert order == ["c", "b", "a"] and life.stop_failures == ["b: injected"]


def test_atomic_json_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    write_json_atomic(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": 1, (1, 2): 3})  # fails half way: a key json cannot write
    assert path.read_text().strip().startswith("{") and not list(tmp_path.glob("*.tmp"))


def test_watchdog_withholds_when_a_worker_thread_is_dead(tmp_path: Path) -> None:
    daemon = Daemon(config_from_dict(_config(tmp_path, free_port(), watchdog_progress_s=5.0)))
    daemon.start()
    try:
        assert _wait_until(lambda: daemon.watchdog.problem() is None)
        daemon.scheduler.loops["telemetry"].stop()
        assert _wait_until(lambda: daemon.watchdog.problem() is not None)
        assert "telemetry" in str(daemon.watchdog.problem())
    finally:
        daemon.stop()
