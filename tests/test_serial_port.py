"""Serial-port reader threads on real pseudo-terminals: bulk reads, unplug, re-enumeration, liveness."""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import tty
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers.wait import wait_until

from agent.errors import SerialPortError
from agent.sensors.serialport import QueueSink, SerialPortReader, open_pyserial


class Pty:
    """A pseudo-terminal pair; the test writes to the master like a device would."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def close(self) -> None:
        """Unplug: the device node disappears and readers get EIO."""
        if not self.closed:
            os.close(self.master)
            os.close(self.slave)
            self.closed = True


class Sink:
    def __init__(self) -> None:
        self.q: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def __call__(self, t: float, data: bytes) -> None:
        self.q.put((t, data))

    def collect(self, n_bytes: int, timeout_s: float = 5.0) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(out) < n_bytes and time.monotonic() < deadline:
            try:
                out += self.q.get(timeout=0.05)[1]
            except queue.Empty:
                continue
        return bytes(out)


def _link(target: str, link: Path) -> None:
    """Point a stable name at a device atomically (what udev does for /dev/serial/by-id)."""
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _has_bytes(reader: SerialPortReader, n: int) -> bool:
    return reader.counters.bytes == n


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


def test_reads_in_bulk_through_a_stable_link(pty: Pty, tmp_path: Path) -> None:
    link = tmp_path / "usb-LEWS_bridge_0001-if00"
    _link(pty.path, link)
    sink = Sink()
    reader = SerialPortReader("bridge", str(link), sink, read_timeout_s=0.1).start()
    try:
        wait_until(lambda: reader.counters.connected)
        assert reader.counters.device == os.path.realpath(pty.path)
        payload = bytes(range(256)) * 400  # 100 KiB in one go
        pty.write(payload)
        assert sink.collect(len(payload)) == payload
        c = reader.counters
        assert c.bytes == len(payload)
        assert c.reads < len(payload) / 100, f"{c.reads} reads for {len(payload)} bytes: not bulk"
        age = reader.seconds_since_last_byte()
        assert age is not None and age < 2.0
        assert c.last_byte_utc is not None and abs(c.last_byte_utc - time.time()) < 5
    finally:
        reader.stop()
    assert not reader.running


def test_idle_port_does_not_spin(pty: Pty) -> None:
    reader = SerialPortReader("idle", pty.path, Sink(), read_timeout_s=0.2).start()
    try:
        wait_until(lambda: reader.counters.connected)
        thread_id = reader._thread.native_id
        proc = psutil.Process()

        def cpu() -> float:
            return sum(t.user_time + t.system_time for t in proc.threads() if t.id == thread_id)

        before = cpu()
        time.sleep(1.0)
        used = cpu() - before
        assert used < 0.05, f"idle reader used {used:.3f} s CPU in 1 s"
    finally:
        reader.stop()


@pytest.mark.faults
def test_unplug_and_reenumeration_reopen_with_backoff(tmp_path: Path) -> None:
    first = Pty()
    link = tmp_path / "by-id-bridge"
    _link(first.path, link)
    sink = Sink()
    reader = SerialPortReader("bridge", str(link), sink, read_timeout_s=0.05, backoff_s=(0.05, 0.4)).start()
    second: Pty | None = None
    try:
        wait_until(lambda: reader.counters.connected)
        first.write(b"before")
        assert sink.collect(6) == b"before"
        first.close()  # unplug: EIO on the open port, then the node is gone
        wait_until(lambda: reader.counters.disconnects == 1 and not reader.counters.connected)
        wait_until(lambda: reader.counters.open_failures >= 3)  # retrying while it is gone
        second = Pty()  # the device comes back as another tty ...
        _link(second.path, link)  # ... and udev points the stable name at it
        wait_until(lambda: reader.counters.opens == 2 and reader.counters.connected)
        assert reader.counters.device == os.path.realpath(second.path)
        second.write(b"after")
        assert sink.collect(5) == b"after"
        assert "read" in reader.counters.last_error or "open" in reader.counters.last_error
    finally:
        reader.stop()
        first.close()
        if second is not None:
            second.close()


@pytest.mark.faults
def test_backoff_grows_and_stop_is_prompt(tmp_path: Path) -> None:
    attempts: list[float] = []

    def opener(path: str, baudrate: int, timeout_s: float) -> Any:
        attempts.append(time.monotonic())
        return open_pyserial(path, baudrate, timeout_s)  # the real open: the node does not exist

    gone = str(tmp_path / "nothing")
    reader = SerialPortReader("gone", gone, Sink(), backoff_s=(0.05, 0.2), opener=opener).start()
    try:
        wait_until(lambda: reader.counters.open_failures >= 6, 30, "six failed opens")
    finally:
        reader.stop()
    # The wait after each failure doubles from 0.05 s up to the 0.2 s cap, so attempts are never closer
    # than that (a loaded machine only stretches them): it retries, it does not spin.
    gaps = [b - a for a, b in itertools.pairwise(attempts[:6])]
    for gap, wait in zip(gaps, (0.05, 0.1, 0.2, 0.2, 0.2), strict=True):
        assert gap >= 0.9 * wait, (gaps, wait)
    assert reader.counters.opens == 0 and "open" in reader.counters.last_error
    # stop() interrupts a long backoff wait at once instead of sleeping it out.
    slow = SerialPortReader("gone-slow", gone, Sink(), backoff_s=(30.0, 30.0)).start()
    wait_until(lambda: slow.counters.open_failures >= 1, 10, "the first failed open")
    started = time.monotonic()
    slow.stop()
    assert time.monotonic() - started < 10.0 and not slow.running


@pytest.mark.faults
def test_failing_consumer_is_counted_not_fatal(pty: Pty) -> None:
    calls: list[bytes] = []

    def consumer(t: float, data: bytes) -> None:
        calls.append(data)
        if len(calls) == 1:
            raise ValueError("consumer bug")

    reader = SerialPortReader("bridge", pty.path, consumer, read_timeout_s=0.05).start()
    try:
        wait_until(lambda: reader.counters.connected)
        pty.write(b"one")
        wait_until(lambda: len(calls) == 1)
        pty.write(b"two")
        wait_until(lambda: len(calls) == 2)
        assert reader.counters.callback_errors == 1 and reader.running
    finally:
        reader.stop()


def test_write_goes_to_the_device_and_fails_when_closed(pty: Pty, tmp_path: Path) -> None:
    reader = SerialPortReader("bridge", pty.path, Sink(), read_timeout_s=0.05).start()
    try:
        wait_until(lambda: reader.counters.connected)
        assert reader.write(b"\x00cmd\x00")
        got = b""
        deadline = time.monotonic() + 2
        while len(got) < 5 and time.monotonic() < deadline:
            got += os.read(pty.master, 64)
        assert got == b"\x00cmd\x00"
    finally:
        reader.stop()
    assert not reader.write(b"x") and reader.counters.write_failures == 1


@pytest.mark.faults
def test_silence_triggers_a_reopen(pty: Pty) -> None:
    reader = SerialPortReader("quiet", pty.path, Sink(), read_timeout_s=0.05, silence_reopen_s=0.3).start()
    try:
        wait_until(lambda: reader.counters.silence_reopens >= 1 and reader.counters.opens >= 2)
    finally:
        reader.stop()


def test_second_reader_of_the_same_port_is_refused(pty: Pty) -> None:
    first = SerialPortReader("a", pty.path, Sink(), read_timeout_s=0.05).start()
    try:
        wait_until(lambda: first.counters.connected)
        second = SerialPortReader("b", pty.path, Sink(), read_timeout_s=0.05, backoff_s=(0.05, 0.05)).start()
        try:
            wait_until(lambda: second.counters.open_failures >= 1)
            assert not second.counters.connected
        finally:
            second.stop()
    finally:
        first.stop()


def test_many_ports_each_have_their_own_thread() -> None:
    ptys = [Pty() for _ in range(3)]
    sinks = [Sink() for _ in ptys]
    readers = [
        SerialPortReader(f"p{i}", p.path, s, read_timeout_s=0.05).start()
        for i, (p, s) in enumerate(zip(ptys, sinks, strict=True))
    ]
    try:
        wait_until(lambda: all(r.counters.connected for r in readers))
        names = {t.name for t in threading.enumerate()}
        assert {"serial-p0", "serial-p1", "serial-p2"} <= names
        for i, p in enumerate(ptys):
            p.write(f"port{i}".encode())
        assert [s.collect(5) for s in sinks] == [b"port0", b"port1", b"port2"]
    finally:
        for r in readers:
            r.stop()
        for p in ptys:
            p.close()


def test_empty_path_is_a_configuration_error() -> None:
    with pytest.raises(SerialPortError) as err:
        SerialPortReader("bridge", "", Sink())
    assert "by-id" in err.value.fix


def test_queue_sink_hands_over_and_counts_overflow(pty: Pty) -> None:
    sink = QueueSink(maxsize=2)
    reader = SerialPortReader("bridge", pty.path, sink, read_timeout_s=0.05).start()
    try:
        wait_until(lambda: reader.counters.connected)
        for i in range(5):  # nobody consumes: 2 chunks fit, the rest is dropped and counted
            pty.write(bytes([65 + i]) * 10)
            wait_until(partial(_has_bytes, reader, 10 * (i + 1)))
        assert sink.dropped_chunks == 3 and sink.dropped_bytes == 30
        first = sink.get(1.0)
        assert first is not None and first[1] == b"A" * 10
        second = sink.get(1.0)
        assert second is not None and second[1] == b"B" * 10
        assert sink.get(0.05) is None
    finally:
        reader.stop()
