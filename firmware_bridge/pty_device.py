"""The simulated microcontroller on a pseudo-terminal, in real time or compressed time.

The gateway side opens :attr:`PtyDevice.port` with pyserial, like a USB-serial adapter. ``unplug()``
and ``plug()`` simulate pulling the cable and the adapter re-enumerating as another tty while the
device itself keeps running (and counting rain).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty

from firmware_bridge.device_model import DeviceModel
from firmware_bridge.scenario import Scenario


class PtyDevice:
    """Runs a DeviceModel on a pty pair. ``speed``: time compression (1.0 real time, 60 = a minute a second).

    Bytes the device cannot write within ``write_timeout_s`` (nobody reading, or unplugged) are dropped and
    counted in ``bytes_dropped``, as a UART would lose them.
    """

    def __init__(self, scenario: Scenario, *, speed: float = 1.0, write_timeout_s: float = 5.0) -> None:
        self.model = DeviceModel(scenario)
        self.speed = speed
        self.write_timeout_s = write_timeout_s
        self.bytes_written = 0
        self.bytes_dropped = 0
        self.done = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._fds: tuple[int, int] | None = None
        self._io = threading.RLock()  # held around every syscall on the master fd
        self.port = ""
        self.plug()
        self._thread = threading.Thread(target=self._run, name="pty-device", daemon=True)

    # --- cable -------------------------------------------------------------------------------------
    def plug(self) -> str:
        """Connect the device to a new pty (a re-enumerated adapter); returns its path."""
        master, slave = os.openpty()
        tty.setraw(slave)
        with self._io, self._lock:
            old, self._fds = self._fds, (master, slave)
            self.port = os.ttyname(slave)
        if old is not None:
            self._close(old)
        return self.port

    def unplug(self) -> None:
        """Pull the cable: the tty disappears, the gateway's reads fail, the device keeps running."""
        with self._io, self._lock:
            old, self._fds = self._fds, None
        if old is not None:
            self._close(old)

    @staticmethod
    def _close(fds: tuple[int, int]) -> None:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> PtyDevice:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.unplug()

    def __enter__(self) -> PtyDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- thread ------------------------------------------------------------------------------------
    def _master(self) -> int | None:
        with self._lock:
            return None if self._fds is None else self._fds[0]

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + self.write_timeout_s
        while view:
            with self._io:  # unplug() waits for this: the fd cannot be closed (and reused) under us
                master = self._master()
                if master is None:
                    break
                try:
                    _, ready, _ = select.select([], [master], [], max(0.0, deadline - time.monotonic()))
                    if not ready:
                        break
                    n = os.write(master, view)
                except OSError:  # unplugged while writing
                    break
            self.bytes_written += n
            view = view[n:]
        self.bytes_dropped += len(view)

    def _run(self) -> None:
        t0 = time.monotonic()
        model = self.model
        while not self._stop.is_set():
            t_dev = (time.monotonic() - t0) * self.speed
            for _, data in model.advance(t_dev):
                self._write(data)
            if model.finished():
                self.done.set()
            wait = max(0.0, min((model.next_event_time() - t_dev) / self.speed, 0.05))
            master = self._master()
            if master is None:
                self._stop.wait(wait)
                continue
            try:
                with self._io:
                    if self._master() != master:
                        continue  # unplugged or replugged since: read the new one next time
                    readable, _, _ = select.select([master], [], [], wait)
                    data = os.read(master, 4096) if readable else b""
            except OSError:  # unplugged while waiting
                continue
            if data:
                t_now = min((time.monotonic() - t0) * self.speed, model.s.duration_s)
                for _, out in model.receive(data, t_now):
                    self._write(out)
