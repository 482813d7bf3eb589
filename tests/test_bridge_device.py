"""Bridge frames -> Samples and SeismicBlocks: the rain-counter rule, reboots, gaps, wire, heartbeat."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.features.samples import CHANNEL_AGGREGATES, Sample
from agent.sensors.bridge_device import (
    REBASELINE_AFTER,
    BridgeDevice,
    RainState,
    SeismicBlock,
    max_plausible_tips,
    rain_step,
)
from firmware_bridge.messages import Frame, Heartbeat, MsgType, Rain, SampleFormat, Seismic, Wire, WireState
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import Garbage, Outage, RainStep, Scenario, WireChange
from firmware_bridge.simulator import DeviceModel

MM = 0.2
MAX = 400.0


def _rain(tips: int, uptime: int) -> Rain:
    return Rain(tips, uptime, 0)


@pytest.mark.parametrize(
    ("prev", "boot", "tips", "uptime", "expect_tips", "kind"),
    [
        (None, 1, 500, 100, None, "baseline"),
        (RainState(1, 10, 100), 1, 10, 160, 0, "ok"),
        (RainState(1, 10, 100), 1, 13, 160, 3, "ok"),
        (RainState(1, 2**32 - 2, 100), 1, 3, 160, 5, "wrap"),
        (RainState(1, 900, 100), 2, 4, 60, 4, "reboot"),
        (RainState(1, 900, 100), 2, 100_000, 60, None, "implausible"),
    ],
)
def test_rain_rule(
    prev: RainState | None, boot: int, tips: int, uptime: int, expect_tips: int | None, kind: str
) -> None:
    decision = rain_step(prev, boot, _rain(tips, uptime), mm_per_tip=MM, max_mm_per_h=MAX)
    assert (decision.tips, decision.kind) == (expect_tips, kind)
    assert decision.state == RainState(boot, tips, uptime)


def test_unexplained_counters_hold_the_baseline_then_rebaseline() -> None:
    """A replayed old frame or a jump is kept out and the last good value stays the baseline, so the
    next good frame counts only the new tips (nothing counted twice); a counter that keeps
    contradicting the baseline is believed after REBASELINE_AFTER frames."""
    good = RainState(1, 900, 100)
    old = rain_step(good, 1, _rain(5, 160), mm_per_tip=MM, max_mm_per_h=MAX)
    assert (old.tips, old.kind, old.state) == (None, "regression", RainState(1, 900, 100, 1))
    nxt = rain_step(old.state, 1, _rain(903, 220), mm_per_tip=MM, max_mm_per_h=MAX)
    assert (nxt.tips, nxt.kind, nxt.state.held) == (3, "ok", 0)
    jump = rain_step(good, 1, _rain(10_900, 160), mm_per_tip=MM, max_mm_per_h=MAX)
    assert (jump.tips, jump.kind, jump.state.tips) == (None, "implausible", 900)
    state: RainState = good
    kinds = []
    for k in range(REBASELINE_AFTER):
        d = rain_step(state, 1, _rain(3 + k, 160 + 60 * k), mm_per_tip=MM, max_mm_per_h=MAX)
        kinds.append(d.kind)
        state = d.state
    assert kinds == ["regression"] * (REBASELINE_AFTER - 1) + ["rebaseline"]
    assert state == RainState(1, 3 + REBASELINE_AFTER - 1, 160 + 60 * (REBASELINE_AFTER - 1))
    after = rain_step(state, 1, _rain(state.tips + 2, state.uptime_s + 60), mm_per_tip=MM, max_mm_per_h=MAX)
    assert (after.tips, after.kind) == (2, "ok")


def test_plausibility_limit_scales_with_time() -> None:
    # 400 mm/h for one minute is 6.67 mm = 34 tips (+1 slack); for an hour 2000 (+1).
    assert max_plausible_tips(10, MM, MAX) == 35
    assert max_plausible_tips(3600, MM, MAX) == 2001


def _frame(msg: Rain | Wire | Heartbeat | Seismic, boot: int = 7, seq: int = 0) -> Frame:
    kind = {Rain: MsgType.RAIN, Wire: MsgType.WIRE, Heartbeat: MsgType.HEARTBEAT, Seismic: MsgType.SEISMIC}
    return Frame(1, kind[type(msg)], seq, boot, msg)


def test_resume_from_persisted_rain_state() -> None:
    dev = BridgeDevice(rain_state=RainState(7, 100, 1000))
    out = dev.handle(_frame(_rain(103, 1060)), t=1e9)
    assert out.samples == (Sample(1e9, "rain.mm", 0.6),)
    assert dev.rain_state == RainState(7, 103, 1060)


def _run(scenario: Scenario) -> tuple[BridgeDevice, DeviceModel, list[Sample], list[SeismicBlock]]:
    model = DeviceModel(scenario)
    decoder = FrameDecoder()
    dev = BridgeDevice(mm_per_tip=scenario.mm_per_tip)
    samples: list[Sample] = []
    blocks: list[SeismicBlock] = []
    for t_s, data in model.advance(scenario.duration_s):
        for frame in decoder.decode(data):
            out = dev.handle(frame, scenario.start_utc + t_s)
            samples.extend(out.samples)
            if out.seismic is not None:
                blocks.append(out.seismic)
    assert decoder.counters.error_total() == 0 or scenario.garbage
    return dev, model, samples, blocks


def test_storm_with_reboot_and_outage_loses_and_invents_nothing() -> None:
    scenario = Scenario(
        duration_s=3 * 3600,
        rain=(RainStep(0, 0), RainStep(1800, 25.0), RainStep(5400, 60.0), RainStep(7200, 5.0)),
        reboots=(4000.0,),
        outages=(Outage(6000, 300),),  # RAIN frames lost: the cumulative counter recovers them
        seismic_rate_hz=0,
        seed=11,
    )
    dev, model, samples, _ = _run(scenario)
    rain = [s for s in samples if s.channel == "rain.mm"]
    assert all(s.channel in CHANNEL_AGGREGATES for s in samples)
    # Rain passed on == what the device reported (tips x 0.2 mm), to the micrometre.
    assert sum(s.value for s in rain) == pytest.approx(model.truth.rain_mm_delivered(MM), abs=1e-6)
    # And that is the physical rain less only what fell while the device itself was rebooting.
    physical = scenario.physical_tips_until(scenario.duration_s)
    lost_in_device = physical - sum(model.truth.rain_tips_delivered.values())
    assert 0 <= lost_in_device <= max_plausible_tips(scenario.reboot_downtime_s + 60, MM, 60.0)
    assert dev.counters.rain == {"baseline": 1, "ok": dev.counters.rain["ok"], "reboot": 1}
    assert dev.counters.reboots == 1
    # The outage hid 300 s of RAIN frames; the first frame after it carries all their tips at once.
    after = [s for s in rain if scenario.start_utc + 6300 <= s.t < scenario.start_utc + 6302]
    assert after and after[0].value >= 60.0 * 300 / 3600 - MM


def test_wire_heartbeat_channels_and_missed_transitions() -> None:
    scenario = Scenario(
        duration_s=120,
        wire=(
            WireChange(20, WireState.TRIPPED),
            WireChange(41, WireState.OPEN_CIRCUIT),
            WireChange(42, WireState.INTACT),
        ),
        outages=(Outage(40.5, 2.0),),  # the two changes at 41 and 42 s are never received
        supply_mv=11_900,
        temp_c=-3.25,
        seismic_rate_hz=0,
    )
    dev, _, samples, _ = _run(scenario)
    wire = [(round(s.t - scenario.start_utc, 3), s.value) for s in samples if s.channel == "wire.state"]
    assert (20.0, 1.0) in wire
    assert 2.0 not in [v for _, v in wire]  # never received, never invented ...
    # ... but counted: TRIPPED -> (OPEN) -> INTACT, 2 changes of which the state now seen explains 1.
    assert dev.counters.wire_missed_transitions == 1
    assert wire[-1][1] == 0.0
    volts = {s.value for s in samples if s.channel == "device.supply_v"}
    temps = {s.value for s in samples if s.channel == "device.temp_c"}
    assert volts == {11.9} and temps == {-3.25}


def test_a_trip_and_reset_between_frames_is_counted() -> None:
    dev = BridgeDevice()
    dev.handle(_frame(Wire(WireState.INTACT, 4, 10, 0)), 10.0)
    out = dev.handle(_frame(Wire(WireState.INTACT, 6, 20, 0), seq=1), 20.0)
    assert out.samples == (Sample(20.0, "wire.state", 0.0),)
    assert dev.counters.wire_missed_transitions == 2


def test_implausible_heartbeat_is_not_passed_on() -> None:
    dev = BridgeDevice()
    out = dev.handle(_frame(Heartbeat(1, 65000, 0, 0, 0, 0)), 1.0)
    assert out.samples == () and dev.counters.implausible_heartbeats == 1


def test_seismic_blocks_timing_gaps_and_overlap() -> None:
    dev = BridgeDevice()

    def block(first: int, n: int = 50, rate: int = 100, boot: int = 7) -> Seismic:
        return Seismic(first, 0, rate, 4, SampleFormat.INT32, tuple(range(first, first + n)))

    t = 1000.0
    b0 = dev.handle(_frame(block(0)), t).seismic
    assert b0 is not None and b0.restart and b0.t0 == pytest.approx(999.5) and b0.gain == 4
    b1 = dev.handle(_frame(block(50)), t + 0.52).seismic
    assert b1 is not None and not b1.restart and b1.gap_before == 0 and b1.t0 == pytest.approx(1000.0)
    b2 = dev.handle(_frame(block(250)), t + 3.01).seismic  # 150 samples lost
    assert b2 is not None and b2.gap_before == 150 and b2.t0 == pytest.approx(1002.0)
    b3 = dev.handle(_frame(block(280)), t + 3.31).seismic  # 20 samples overlap: trimmed
    assert b3 is not None and b3.first_index == 300 and len(b3.counts) == 30 and int(b3.counts[0]) == 300
    assert dev.handle(_frame(block(280)), t + 3.4).seismic is None  # entirely old
    assert not b3.counts.flags.writeable
    b4 = dev.handle(_frame(block(0), boot=8), t + 10).seismic  # reboot: restart, no gap
    assert b4 is not None and b4.restart and b4.gap_before == 0
    c = dev.counters
    assert (c.seismic_gaps, c.seismic_missing_samples, c.seismic_overlap_samples) == (1, 150, 70)
    assert c.seismic_dropped_blocks == 1


def _uh4_counts(shared_data: Path) -> np.ndarray:
    path = shared_data / "obspy-seismic-samples" / "original" / "BW.UH4._.EHZ.D.2010.147.cut.slist.gz"
    with gzip.open(path, "rt") as fh:
        header = fh.readline()
        values = np.array(fh.read().split(), dtype=np.float64)
    assert "100 sps" in header and len(values) == 23033
    return np.rint(values).astype(np.int64)


def test_real_geophone_recording_through_the_bridge_is_bit_exact(shared_data: Path) -> None:
    """BW.UH4 EHZ (Unterhaching, 2010-05-27, 100 Hz, obspy test data), rounded to integer counts, sent
    through the simulated device in SEISMIC blocks: the gateway gets every count back, in order."""
    counts = _uh4_counts(shared_data)
    scenario = Scenario(duration_s=len(counts) / 100, seismic_trace=tuple(int(x) for x in counts), seed=2)
    _, _, _, blocks = _run(scenario)
    got = np.concatenate([b.counts for b in blocks])
    assert len(got) == len(counts) // 50 * 50
    assert np.array_equal(got, counts[: len(got)])
    t0 = np.array([b.t0 for b in blocks])
    assert np.allclose(np.diff(t0), 0.5) and all(b.gap_before == 0 for b in blocks)


def test_clock_check() -> None:
    dev = BridgeDevice()
    assert dev.clock_ok() is None
    dev.handle(_frame(Rain(0, 1, 0)), 1000.0)
    assert dev.clock_ok() is False and dev.clock_skew_s is None
    dev.handle(_frame(Rain(0, 2, 1_000_500), seq=1), 1000.0)
    assert dev.clock_ok() is True and dev.clock_skew_s == pytest.approx(0.5)
    dev.handle(_frame(Rain(0, 3, 1_010_000), seq=2), 1000.0)
    assert dev.clock_ok() is False and dev.clock_ok(max_skew_s=20) is True


def test_clipped_samples_are_counted() -> None:
    dev = BridgeDevice()
    block = Seismic(0, 0, 100, 1, SampleFormat.INT16, (32767, -32768, 5, 32766))
    out = dev.handle(_frame(block), 10.0).seismic
    assert out is not None and out.clipped == 2 and dev.counters.seismic_clipped_samples == 2


_steps = st.lists(st.tuples(st.integers(0, 7000), st.floats(0, 80)), min_size=1, max_size=5)
_windows = st.lists(st.tuples(st.integers(0, 7000), st.integers(1, 900)), max_size=3)


@pytest.mark.faults
@settings(max_examples=20, deadline=None)
@given(
    rain=_steps,
    reboots=st.lists(st.integers(1, 7000), max_size=3),
    outages=_windows,
    garbage=st.lists(st.tuples(st.integers(0, 7000), st.integers(1, 300)), max_size=4),
    seed=st.integers(0, 1000),
)
def test_random_storms_rain_is_exactly_what_the_device_reported(
    rain: list[tuple[int, float]],
    reboots: list[int],
    outages: list[tuple[int, int]],
    garbage: list[tuple[int, int]],
    seed: int,
) -> None:
    """Whatever the reboots, link outages and line noise: the gateway passes on exactly the rain in the
    RAIN frames it received, less nothing but the first counter it saw (its baseline)."""
    scenario = Scenario(
        duration_s=7200,
        rain=tuple(RainStep(float(t), mm) for t, mm in sorted(dict(rain).items())),
        reboots=tuple(float(t) for t in sorted(set(reboots))),
        outages=tuple(Outage(float(t), float(d)) for t, d in sorted(outages)),
        garbage=tuple(Garbage(float(t), n) for t, n in sorted(garbage)),
        seismic_rate_hz=0,
        heartbeat_period_s=60,
        seed=seed,
    )
    dev, model, samples, _ = _run(scenario)
    truth = model.truth
    if not truth.rain_tips_delivered:
        assert not [s for s in samples if s.channel == "rain.mm"]
        return
    first_boot = next(b for b in truth.boot_ids if b in truth.rain_tips_first)
    expected = sum(truth.rain_tips_delivered.values()) - truth.rain_tips_first[first_boot]
    got = sum(s.value for s in samples if s.channel == "rain.mm")
    assert got == pytest.approx(expected * MM, abs=1e-6)
    assert dev.counters.rain.get("regression", 0) == dev.counters.rain.get("implausible", 0) == 0
