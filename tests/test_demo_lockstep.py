"""The lockstep demo writes nothing until the daemon holds its ports open.

pyserial's ``open()`` flushes a tty's input queue (``tcflush(TCIFLUSH)``), so a step written before the
daemon's port thread opened the pty was lost and the demo waited for it until it gave up ("the daemon
did not read the demo's step at day 0.01", seen once on a loaded machine)."""

from __future__ import annotations

import os
import threading
import time

import pytest
import serial

from agent.demo.lockstep import Lockstep
from agent.demo.scenario import storm
from agent.errors import DemoStalled

START = 1_780_000_000.0


def test_pyserial_open_drops_what_was_written_before_it() -> None:
    site = Lockstep(storm(), START)
    try:
        os.write(site.gnss.master, b"written before the open\n")
        port = serial.Serial(site.gnss.path, 115200, timeout=0.2)
        try:
            os.write(site.gnss.master, b"after\n")
            assert port.read(64) == b"after\n"  # the first line is gone: the reason for the wait
        finally:
            port.close()
    finally:
        site.close()


def test_no_step_is_written_until_the_ports_are_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.demo.lockstep.DRAIN_TIMEOUT_S", 3.0)  # nobody drains: fail soon after
    site = Lockstep(storm(), START)
    opened = threading.Event()
    stop = threading.Event()
    failures: list[BaseException] = []
    reads: list[bytes] = []

    def drive() -> None:
        try:
            site.run(lambda: {}, lambda _t: True, ports_open=opened.is_set, stop=stop)
        except DemoStalled as exc:
            failures.append(exc)

    thread = threading.Thread(target=drive, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        assert site.gnss.written == 0 and site.bridge.written == 0 and site.steps == 0
        port = serial.Serial(site.gnss.path, 115200, timeout=0.2)  # the daemon's open
        opened.set()
        deadline = time.monotonic() + 10
        while not reads and time.monotonic() < deadline:
            reads.append(port.read(4096))
            reads = [r for r in reads if r]
        port.close()
        assert reads and site.gnss.written > 0  # the first step went out once the port was open
    finally:
        stop.set()
        thread.join(10)
        site.close()
    assert not thread.is_alive() and len(failures) == 1  # nothing drained the step: stalled, as it should


def test_ports_that_never_open_fail_the_demo_with_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.demo.lockstep.DRAIN_TIMEOUT_S", 0.3)
    site = Lockstep(storm(), START)
    try:
        with pytest.raises(DemoStalled, match="did not open the demo's ports /dev/pts/"):
            site.run(lambda: {}, lambda _t: True, ports_open=lambda: False, stop=threading.Event())
        assert site.gnss.written == 0
    finally:
        site.close()
