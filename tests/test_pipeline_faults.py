"""Pipeline behaviour under bad input and failures: everything counted, nothing raised, clean stop."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.wait import wait_until
from pydantic import ValidationError

from agent.errors import ConfigError
from agent.features.samples import Sample
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.sensors.decoders import BridgeDecoder
from agent.sensors.gnss import Reference
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate
from agent.sensors.pipeline import Pipeline, QueueSubscriber
from agent.sensors.settings import SensorsConfig, SerialPortConfig
from firmware_bridge.device_model import generate_frames
from firmware_bridge.pty_device import PtyDevice
from firmware_bridge.scenario import scenario_from_dict

START = 1_767_225_600.0
GNSS_REF = {"lat": 46.05, "lon": 14.5, "h_m": 400.0}


def _cfg(**kw: Any) -> SensorsConfig:
    data: dict[str, Any] = {
        "ports": [
            {"name": "bridge0", "path": "/dev/null", "kind": "bridge"},
            {"name": "gnss0", "path": "/dev/null", "kind": "gnss"},
        ],
        "gnss": {"reference": GNSS_REF},
    }
    data.update(kw)
    return SensorsConfig.model_validate(data)


def _frames(duration: float = 600.0, **kw: Any) -> list[tuple[float, bytes]]:
    sc = scenario_from_dict({"duration_s": duration, "start_utc": START, "seismic_rate_hz": 0, **kw})
    return [(START + t, data) for t, data in generate_frames(sc)]


@pytest.mark.faults
def test_random_bytes_into_every_decoder_are_counted_not_raised() -> None:
    pipe = Pipeline(_cfg(), None)
    rng = np.random.default_rng(5)
    for k in range(300):
        chunk = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        for port in ("bridge0", "gnss0"):
            pipe.ingest(port, START + k, chunk)  # must not raise
    c = pipe.counters()
    bridge = c["decoders"]["bridge0"]["frames"]
    assert bridge["bytes_in"] == c["pipeline"]["bytes.bridge0"]
    assert sum(bridge["errors"].values()) > 0
    gnss = c["decoders"]["gnss0"]
    assert gnss["bytes"] == c["pipeline"]["bytes.gnss0"] and gnss["skipped_bytes"] > 0
    assert not [k for k in c["pipeline"] if k.startswith("drops.decoder")]


@pytest.mark.faults
def test_unknown_port_failing_subscriber_and_failing_decoder_are_counted() -> None:
    pipe = Pipeline(_cfg(), None)
    got: list[Sample] = []

    def broken(port: str, samples: Any) -> None:
        raise RuntimeError("consumer bug")

    pipe.subscribe(broken)
    pipe.subscribe(lambda port, samples: got.extend(samples))
    frames = _frames(wire=[{"t_s": 100, "state": 1}])
    for t, data in frames:
        pipe.ingest("bridge0", t, data)
    assert any(s.channel == "wire.state" and s.value == 1.0 for s in got)  # the second one still got them
    assert pipe.counters()["pipeline"]["drops.subscriber_exception"] > 0
    assert pipe.ingest("nope", START, b"abc") == []
    assert pipe.counters()["pipeline"]["drops.unknown_port_bytes"] == 3

    class Exploding(BridgeDecoder):
        def feed(self, t: float, data: bytes) -> list[Sample]:
            raise ValueError("decoder bug")

    pipe.decoders["bridge0"] = Exploding(_cfg(), "bridge0")
    assert pipe.ingest("bridge0", START, b"\x00\x01") == []
    assert pipe.counters()["pipeline"]["drops.decoder_exception_bytes"] == 2


@pytest.mark.faults
def test_samples_with_implausible_times_are_dropped_and_counted() -> None:
    # A receiver reporting a date 1024 weeks in the past (GPS week rollover) while read today.
    rollover = 1024 * 7 * 86400.0
    sim = SimConfig(
        reference=Reference(46.05, 14.5, 400.0),
        trajectory=Trajectory(t_s=(0.0, 60.0), e_mm=(0.0, 0.0), n_mm=(0.0, 0.0), u_mm=(0.0, 0.0)),
        start_utc=START - rollover,
        duration_s=60.0,
    )
    pipe = Pipeline(_cfg(), None)
    got: list[Sample] = []
    pipe.subscribe(lambda port, samples: got.extend(samples))
    for ep in simulate(sim):
        pipe.ingest("gnss0", ep.t + rollover, ep.data)
    pipe.finish()  # the last epoch is released at the end of the stream
    c = pipe.counters()
    assert got == [] and c["pipeline"]["drops.implausible_time"] == 5 * 60
    assert c["decoders"]["gnss0"]["epochs_gated"] == 60  # decoded fine, refused for their time only


def test_queue_subscriber_filters_channels_and_counts_overflow() -> None:
    pipe = Pipeline(_cfg(), None)
    wire = QueueSubscriber(maxsize=3, channels=["wire.state"])
    pipe.subscribe(wire)
    for t, data in _frames(duration=120.0, heartbeat_period_s=10.0):
        pipe.ingest("bridge0", t, data)
    n_wire = pipe.counters()["pipeline"]["samples.wire.state"]
    assert n_wire > 3
    assert wire.queue.qsize() == 3 and wire.dropped == n_wire - 3
    assert {s.channel for _, s in list(wire.queue.queue)} == {"wire.state"}


def test_gnss_port_needs_a_reference() -> None:
    ports = {"ports": [{"name": "g", "path": "/x", "kind": "gnss"}]}
    # Refused when the configuration is validated (`agent config validate`) ...
    with pytest.raises(ValidationError, match="reference"):
        SensorsConfig.model_validate(ports)
    # ... and by the pipeline itself for a configuration built without validation.
    with pytest.raises(ConfigError, match="reference"):
        unchecked = SensorsConfig.model_validate({}).model_copy(
            update={"ports": [SerialPortConfig(name="g", path="/x", kind="gnss")]}
        )
        Pipeline(unchecked, None)


@pytest.mark.faults
@pytest.mark.timeout(60)
def test_device_vanishes_mid_run_and_stop_is_clean(tmp_path: Path) -> None:
    scenario = scenario_from_dict(
        {"duration_s": 3600, "start_utc": START, "seismic_rate_hz": 0, "rain": [{"t_s": 0, "mm_per_h": 36}]}
    )
    device = PtyDevice(scenario, speed=600.0)
    cfg = SensorsConfig.model_validate(
        {
            "ports": [{"name": "bridge0", "path": device.port, "kind": "bridge"}],
            "reopen_backoff_s": [0.05, 0.2],
        }
    )
    mono0 = time.monotonic()
    store = Store(StoreConfig(path=tmp_path / "s.sqlite"))
    pipe = Pipeline(cfg, store, clock=lambda: START + (time.monotonic() - mono0) * 600.0)
    try:
        pipe.start()
        wait_until(lambda: pipe.counters()["ports"]["bridge0"]["connected"], 10, "the port to open")
        device.start()
        wait_until(lambda: pipe.counters()["pipeline"].get("samples.rain.mm", 0) >= 3, 30, "rain samples")
        device.stop()  # the device and its pty disappear

        def noticed() -> bool:
            port = pipe.counters()["ports"]["bridge0"]
            return bool(port["disconnects"] + port["silence_reopens"] >= 1 or port["open_failures"] >= 1)

        wait_until(noticed, 15, "the pipeline to notice the vanished port")
        t0 = time.monotonic()
    finally:
        pipe.stop()
    assert time.monotonic() - t0 < 5.0
    try:
        rain = store.read_samples(START - 10, START + 7200, ["rain.mm"])["rain.mm"][1]
        assert rain.sum() > 0  # what arrived before the device vanished was committed
        assert store.stats["committed"] == sum(
            v for k, v in pipe.counters()["pipeline"].items() if k.startswith("samples.")
        )
    finally:
        store.close()
