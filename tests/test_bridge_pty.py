"""The simulated microcontroller on a pseudo-terminal, read by the real port thread: frames, samples,
commands with ACK/NACK, and a capture that replays to the same frames."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers.wait import wait_until

from agent.features.samples import Sample
from agent.sensors.bridge_device import BridgeDevice
from agent.sensors.capture import CaptureWriter, iter_capture
from agent.sensors.serialport import SerialPortReader
from firmware_bridge.commands import CommandClient, CommandTimeout
from firmware_bridge.messages import Ack, CommandCode, Frame, Nack, NackReason, Rain, WireState
from firmware_bridge.pty_device import PtyDevice
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import RainStep, Scenario, WireChange
from firmware_bridge.simulator import generate_frames

SCENARIO = Scenario(
    duration_s=120,
    rain=(RainStep(0, 0), RainStep(10, 90.0)),
    wire=(WireChange(60, WireState.TRIPPED),),
    seismic_block=100,
    self_test_failures=0x2,
    seed=5,
)


class Gateway:
    """The ingestion path of the agent for one bridge port, as the daemon wires it."""

    def __init__(self, port_path: str, capture: CaptureWriter) -> None:
        self.decoder = FrameDecoder()
        self.device = BridgeDevice()
        self.frames: list[Frame] = []
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.capture = capture.add_port("bridge", "bridge", device=port_path)
        self.port = SerialPortReader("bridge", port_path, self.on_bytes, read_timeout_s=0.05)
        self.commands = CommandClient(self.port.write)

    def on_bytes(self, t: float, data: bytes) -> None:
        self.capture(t, data)
        for frame in self.decoder.decode(data):
            self.commands.on_frame(frame)
            with self.lock:
                self.frames.append(frame)
                self.samples.extend(self.device.handle(frame, t).samples)


def test_device_on_a_pty_end_to_end(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "capture")
    device = PtyDevice(SCENARIO, speed=100.0, write_timeout_s=5.0)
    gw = Gateway(device.port, writer)
    gw.port.start()
    try:
        # pyserial flushes the input on open: power the device up once the gateway listens.
        wait_until(lambda: gw.port.counters.connected)
        device.start()
        wait_until(device.done.is_set)
        expected = sum(1 for _ in generate_frames(SCENARIO))
        wait_until(lambda: len(gw.frames) >= expected), (len(gw.frames), expected)
    finally:
        gw.port.stop()
        device.stop()
    writer.close()
    # Every frame the device meant to send arrived, in order, without a single error or gap.
    c = gw.decoder.counters
    assert c.frames_ok == expected and c.error_total() == 0 and c.missing_frames == 0
    assert device.bytes_dropped == 0
    rain = sum(s.value for s in gw.samples if s.channel == "rain.mm")
    delivered = device.model.truth.rain_mm_delivered(SCENARIO.mm_per_tip)
    assert rain == pytest.approx(delivered, abs=1e-9) and rain > 2.0
    assert any(s.channel == "wire.state" and s.value == 1.0 for s in gw.samples)
    # The capture replays to exactly the same frames.
    replay = FrameDecoder()
    replayed = [f for _, _, data in iter_capture(tmp_path / "capture") for f in replay.decode(data)]
    assert replayed == gw.frames
    assert isinstance(gw.frames[0].message.__class__, type) and any(
        isinstance(f.message, Rain) for f in replayed
    )


def test_commands_are_answered_over_the_pty(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "capture")
    with PtyDevice(Scenario(duration_s=3600, seismic_rate_hz=0, self_test_failures=0x2), speed=1.0) as device:
        gw = Gateway(device.port, writer)
        gw.port.start()
        try:
            wait_until(lambda: gw.port.counters.connected)
            time.sleep(0.1)  # let the open's input flush pass before the device answers
            answer = gw.commands.call(CommandCode.SET_CLOCK, 1_900_000_000_000, timeout_s=3)
            assert isinstance(answer, Ack) and answer.code == CommandCode.SET_CLOCK
            answer = gw.commands.call(CommandCode.SELF_TEST, timeout_s=3)
            assert isinstance(answer, Ack) and answer.detail == 0x2
            answer = gw.commands.call(0x63, timeout_s=3)
            assert isinstance(answer, Nack) and answer.reason is NackReason.UNKNOWN_COMMAND
            answer = gw.commands.call(CommandCode.SET_SEISMIC_RATE, 100, timeout_s=3)
            assert isinstance(answer, Nack) and answer.reason is NackReason.NOT_SUPPORTED
            assert device.model.rx.counters.frames_ok == 4
        finally:
            gw.port.stop()
        with pytest.raises(CommandTimeout, match="no ACK/NACK"):
            gw.commands.call(CommandCode.SELF_TEST, timeout_s=0.2)  # port closed: nobody answers
    writer.close()
    assert gw.device.counters.acks == 2 and gw.device.counters.nacks == 2


def _link(target: str, link: Path) -> None:
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


@pytest.mark.faults
def test_cable_pulled_during_rain_loses_no_rain(tmp_path: Path) -> None:
    """The adapter is unplugged for a minute of rain and comes back as another tty: the stable link is
    repointed, the port thread reopens it, and the cumulative counter brings back every tip."""
    scenario = Scenario(duration_s=300, rain=(RainStep(0, 72.0),), seismic_rate_hz=0)  # a tip every 10 s
    device = PtyDevice(scenario, speed=60.0)
    link = tmp_path / "usb-LEWS_bridge-if00"
    _link(device.port, link)
    writer = CaptureWriter(tmp_path / "capture")
    gw = Gateway(str(link), writer)
    gw.port.backoff_s = (0.05, 0.2)
    gw.port.start()
    try:
        wait_until(lambda: gw.port.counters.connected)
        device.start()
        wait_until(lambda: device.model.now >= 100)
        device.unplug()
        wait_until(lambda: device.model.now >= 160)
        _link(device.plug(), link)
        wait_until(device.done.is_set)
        wait_until(lambda: gw.device.rain_state is not None and gw.device.rain_state.uptime_s >= 299)
    finally:
        gw.port.stop()
        device.stop()
        writer.close()
    boot = device.model.truth.boot_ids[0]
    final_tips = device.model.truth.rain_tips_delivered[boot]
    assert final_tips == scenario.physical_tips_until(300) == 30
    rain = sum(s.value for s in gw.samples if s.channel == "rain.mm")
    assert rain == pytest.approx(final_tips * 0.2, abs=1e-9)
    assert device.bytes_dropped > 0 and gw.decoder.counters.missing_frames > 0
    c = gw.port.counters
    assert c.disconnects >= 1 and c.opens == 2
    assert gw.device.counters.rain.get("regression", 0) == gw.device.counters.rain.get("implausible", 0) == 0
