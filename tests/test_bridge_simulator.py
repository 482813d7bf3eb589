"""The scenario-driven device simulator: deterministic, physically consistent, answers commands."""

from __future__ import annotations

import pytest

from firmware_bridge.errors import ScenarioError
from firmware_bridge.messages import (
    Ack,
    Command,
    CommandCode,
    Hello,
    Nack,
    NackReason,
    Rain,
    Seismic,
    Wire,
    WireState,
)
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import Garbage, Outage, RainStep, Scenario, WireChange, scenario_from_dict
from firmware_bridge.simulator import DeviceModel, generate_frames

STORM = {
    "duration_s": 1800,
    "rain": [{"t_s": 0, "mm_per_h": 0}, {"t_s": 300, "mm_per_h": 36.0}, {"t_s": 1200, "mm_per_h": 0}],
    "wire": [{"t_s": 900, "state": 1}],
    "reboots": [600],
    "seismic_events": [{"t_s": 1000, "duration_s": 5, "amplitude_counts": 5000}],
    "seed": 3,
}


def _decode(scenario: Scenario) -> tuple[FrameDecoder, list]:
    decoder = FrameDecoder()
    frames = []
    for _, data in generate_frames(scenario):
        frames.extend(decoder.decode(data))
    return decoder, frames


def test_generation_is_deterministic() -> None:
    s = scenario_from_dict({**STORM, "duration_s": 300})
    assert list(generate_frames(s)) == list(generate_frames(s))
    other = list(generate_frames(scenario_from_dict({**STORM, "duration_s": 300, "seed": 4})))
    assert other != list(generate_frames(s))


def test_rain_physics_and_reboot() -> None:
    s = scenario_from_dict({**STORM, "seismic_rate_hz": 0})
    assert s.rain_mm_until(1800) == pytest.approx(36.0 * 900 / 3600)  # 9 mm
    assert s.physical_tips_until(1800) == 45
    decoder, frames = _decode(s)
    assert decoder.counters.error_total() == 0
    assert decoder.counters.reboots == 1
    boots = list(dict.fromkeys(f.boot_id for f in frames))
    assert len(boots) == 2
    for boot in boots:
        first = next(f for f in frames if f.boot_id == boot)
        assert isinstance(first.message, Hello) and first.seq == 0
    rains = [f for f in frames if isinstance(f.message, Rain)]
    # The counter restarts at 0 after the reboot and is monotonic within a boot.
    for boot in boots:
        tips = [f.message.tips for f in rains if f.boot_id == boot and isinstance(f.message, Rain)]
        assert tips[0] == 0 and tips == sorted(tips)
    # 300..600 s at 36 mm/h: 3 mm = 15 tips, but the 15th falls at 600.0 s, the instant the device
    # reboots: the old boot reported 14, the new boot starts from 0 and the tip is lost in the device.
    model = DeviceModel(s)
    model.advance(1800)
    assert model.truth.rain_tips_delivered[boots[0]] == 14
    assert model.truth.rain_tips_delivered[boots[1]] == 45 - 15
    assert sum(model.truth.rain_tips_delivered.values()) == 44


def test_rain_frames_follow_tips_and_period() -> None:
    s = Scenario(duration_s=600, rain=(RainStep(0, 0.0), RainStep(100, 72.0)), seismic_rate_hz=0)
    _, frames = _decode(s)
    rains = [(f.message.uptime_s, f.message.tips) for f in frames if isinstance(f.message, Rain)]
    # Dry: one frame a minute. Raining at 72 mm/h = one 0.2 mm tip every 10 s: one frame per tip.
    dry = [r for r in rains if r[0] < 100]
    assert [u for u, _ in dry] == [0, 60]
    wet = [tips for u, tips in rains if u > 100]
    assert wet == list(range(1, len(wet) + 1))
    assert wet[-1] == s.physical_tips_until(600)


def test_seismic_blocks_are_contiguous_and_carry_events() -> None:
    s = scenario_from_dict({**STORM, "reboots": []})
    _, frames = _decode(s)
    blocks = [f.message for f in frames if isinstance(f.message, Seismic)]
    assert len(blocks) == 1800 * 100 // 50
    index = 0
    for block in blocks:
        assert block.first_index == index and len(block.samples) == 50
        index += 50
    quiet = max(abs(x) for b in blocks[:100] for x in b.samples)
    loud = max(abs(x) for b in blocks if b.first_index // 100 in range(1000, 1005) for x in b.samples)
    assert quiet < 200 < 4000 < loud


def test_outage_and_garbage_are_visible_to_the_reader() -> None:
    s = Scenario(duration_s=300, outages=(Outage(100, 20),), garbage=(Garbage(200, 64),), seed=1)
    model = DeviceModel(s)
    decoder = FrameDecoder()
    for _, data in model.advance(300):
        decoder.decode(data)
    c = decoder.counters
    assert model.truth.frames_lost > 0
    assert c.missing_frames == model.truth.frames_lost
    assert c.seq_gaps == 1
    assert c.frames_ok == model.truth.frames_sent - model.truth.frames_lost
    assert c.error_total() >= 1  # the line noise


def test_wire_changes_sent_immediately_and_with_heartbeats() -> None:
    s = Scenario(duration_s=100, wire=(WireChange(33.3, WireState.TRIPPED), WireChange(55, WireState.SHORT)))
    model = DeviceModel(s)
    model.advance(100)
    states = model.truth.wire_delivered
    assert (33.3, WireState.TRIPPED) in states and (55, WireState.SHORT) in states
    assert states[-1][1] is WireState.SHORT
    assert sum(1 for t, _ in states if t in (33.3, 55)) == 2


def test_device_answers_commands() -> None:
    model = DeviceModel(Scenario(duration_s=60, self_test_failures=0x4))
    model.advance(1)
    assert model.answer(Command(1, CommandCode.SET_CLOCK, 1_800_000_000_000), 1.0) == [Ack(1, 1, 0)]
    assert model._device_ms(2.0) == 1_800_000_001_000
    assert model.answer(Command(2, CommandCode.SELF_TEST, 0), 1.0) == [Ack(2, 2, 0x4)]
    assert model.answer(Command(3, 0x63, 0), 1.0) == [Nack(3, 0x63, NackReason.UNKNOWN_COMMAND)]
    assert model.answer(Command(4, CommandCode.SET_SEISMIC_RATE, 77), 1.0) == [
        Nack(4, 5, NackReason.BAD_ARGUMENT)
    ]
    hello = model.answer(Command(5, CommandCode.REQUEST_HELLO, 0), 1.0)
    assert isinstance(hello[0], Ack) and isinstance(hello[1], Hello)


def test_reboot_command_makes_a_new_boot() -> None:
    model = DeviceModel(Scenario(duration_s=60))
    model.advance(10)
    first = model.boot_id
    assert model.answer(Command(1, CommandCode.REBOOT, 0), 10.0) == [Ack(1, 4, 0)]
    model.advance(20)
    assert model.boot_id != first and len(model.truth.boot_ids) == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"duration_s": -1},
        {"rain": [{"t_s": 10, "mm_per_h": 1}, {"t_s": 5, "mm_per_h": 1}]},
        {"rain": [{"t_s": 0, "mm_per_h": -3}]},
        {"wire": [{"t_s": 1, "state": 7}]},
        {"no_such_key": 1},
        {"seismic_block": 0},
        {"boot_ids": [0]},
    ],
)
def test_bad_scenarios_are_refused_with_a_fix(bad: dict) -> None:
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(bad)
    assert err.value.fix


def test_wire_messages_count_transitions() -> None:
    s = Scenario(duration_s=30, wire=(WireChange(5, WireState.TRIPPED), WireChange(6, WireState.INTACT)))
    _, frames = _decode(s)
    wires = [f.message for f in frames if isinstance(f.message, Wire)]
    assert [w.transitions for w in wires if w.uptime_s in (5, 6)] == [1, 2]


def test_rate_change_keeps_sample_times_and_uptime() -> None:
    model = DeviceModel(Scenario(duration_s=20, seismic_block=50))
    before = model.advance(5.0)
    assert model.answer(Command(1, CommandCode.SET_SEISMIC_RATE, 200), 5.0) == [Ack(1, 5, 0)]
    decoder = FrameDecoder()
    frames = [f for _, data in before + model.advance(20.0) for f in decoder.decode(data)]
    blocks = [f.message for f in frames if isinstance(f.message, Seismic)]
    # Index keeps counting; after the change blocks of 50 samples come every 0.25 s.
    assert [b.first_index for b in blocks] == [50 * i for i in range(len(blocks))]
    assert {b.rate_hz for b in blocks} == {100, 200}
    fast = [b for b in blocks if b.rate_hz == 200]
    assert fast[0].first_index == 500 and len(fast) >= 55
    uptimes = [f.message.uptime_s for f in frames if isinstance(f.message, Rain)]
    assert uptimes == sorted(uptimes) and uptimes[-1] <= 20
