"""One reader thread per serial port: bulk reads, timeouts, reopen with backoff, counters, liveness.

The port is opened by the path given (a stable ``/dev/serial/by-id/...`` link is used as-is, so the
device is found again after it re-enumerates as another ttyUSBn). Reads block in the kernel up to
``read_timeout_s`` for the first byte and then take everything waiting (``in_waiting``) in one call, so
the thread neither spins nor reads byte by byte. When the device vanishes (unplug, USB reset, EIO) the
thread closes it and reopens with exponential backoff until it is back or :meth:`stop` is called.
Received bytes go to ``on_bytes(t_utc, data)`` (or a :class:`QueueSink`); a failing callback is counted,
never fatal.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import serial

from agent.errors import SerialPortError

log = logging.getLogger(__name__)

BytesCallback = Callable[[float, bytes], None]
Opener = Callable[[str, int, float], Any]


def open_pyserial(path: str, baudrate: int, timeout_s: float) -> serial.Serial:
    """Default opener: raw 8N1, no flow control, exclusive (a second reader of the same port fails)."""
    return serial.Serial(path, baudrate=baudrate, timeout=timeout_s, exclusive=True)


class QueueSink:
    """A bounded queue as the ``on_bytes`` callback, to hand bytes from the port thread to a consumer.

    When the consumer falls ``maxsize`` chunks behind, new chunks are dropped and counted in
    ``dropped_chunks`` / ``dropped_bytes`` (the port thread never blocks).
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self.queue: queue.Queue[tuple[float, bytes]] = queue.Queue(maxsize)
        self.dropped_chunks = 0
        self.dropped_bytes = 0

    def __call__(self, t: float, data: bytes) -> None:
        try:
            self.queue.put_nowait((t, data))
        except queue.Full:
            self.dropped_chunks += 1
            self.dropped_bytes += len(data)
            if self.dropped_chunks == 1:
                log.warning("byte queue full (%d chunks): dropping and counting", self.queue.maxsize)

    def get(self, timeout_s: float | None = None) -> tuple[float, bytes] | None:
        """The next (t, bytes), or None after ``timeout_s`` without any."""
        try:
            return self.queue.get(timeout=timeout_s)
        except queue.Empty:
            return None


@dataclass(frozen=True)
class PortCounters:
    """A snapshot of one port's counters."""

    name: str
    path: str
    device: str = ""  # what the path resolved to at the last open (e.g. /dev/ttyUSB1)
    connected: bool = False
    bytes: int = 0
    reads: int = 0  # read calls that returned data
    opens: int = 0  # successful opens
    open_failures: int = 0  # failed open attempts (missing, busy, permission)
    disconnects: int = 0  # times an open port failed and was closed
    silence_reopens: int = 0  # reopened because nothing arrived for silence_reopen_s
    callback_errors: int = 0
    write_failures: int = 0
    last_byte_utc: float | None = None
    last_error: str = ""


class SerialPortReader:
    """Owns one serial port in its own thread. ``start()``, then ``stop()``; counters at any time."""

    def __init__(
        self,
        name: str,
        path: str,
        on_bytes: BytesCallback,
        *,
        baudrate: int = 115200,
        read_timeout_s: float = 0.2,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        silence_reopen_s: float | None = None,
        opener: Opener = open_pyserial,
    ) -> None:
        if not path or not name:
            raise SerialPortError(
                f"serial port {name!r} has no path {path!r}",
                fix="set the port's path, e.g. /dev/serial/by-id/usb-...-if00",
            )
        self.name = name
        self.path = path
        self.on_bytes = on_bytes
        self.baudrate = baudrate
        self.read_timeout_s = read_timeout_s
        self.backoff_s = backoff_s
        self.silence_reopen_s = silence_reopen_s
        self.opener = opener
        self._counters = PortCounters(name=name, path=path)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port: Any = None
        self._last_byte_mono: float | None = None
        self._failed_in_row = 0
        self._thread = threading.Thread(target=self._run, name=f"serial-{name}", daemon=True)

    # --- public ------------------------------------------------------------------------------------
    def start(self) -> SerialPortReader:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close the port (returns within about read_timeout_s)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def counters(self) -> PortCounters:
        with self._lock:
            return self._counters

    def seconds_since_last_byte(self) -> float | None:
        """Liveness: seconds since the last received byte (None if nothing arrived yet)."""
        last = self._last_byte_mono
        return None if last is None else time.monotonic() - last

    def write(self, data: bytes) -> bool:
        """Send bytes (e.g. a COMMAND frame); False (counted) if the port is not open or fails."""
        with self._lock:
            port = self._port
            try:
                if port is None:
                    raise OSError("port not open")
                port.write(data)
                return True
            except (OSError, serial.SerialException) as exc:
                self._bump(write_failures=self._counters.write_failures + 1, last_error=f"write: {exc}")
                return False

    # --- thread ------------------------------------------------------------------------------------
    def _bump(self, **changes: Any) -> None:
        self._counters = replace(self._counters, **changes)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._bump(**changes)

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                self._stop.wait(delay)
                delay = min(delay * 2.0, self.backoff_s[1])
                continue
            delay = self.backoff_s[0]
            try:
                self._read_loop(port)
            finally:
                with self._lock:
                    self._port = None
                    self._bump(connected=False)
                try:
                    port.close()
                except (OSError, serial.SerialException):
                    log.debug("%s: close failed", self.name, exc_info=True)

    def _open(self) -> Any:
        try:
            port = self.opener(self.path, self.baudrate, self.read_timeout_s)
        except (OSError, serial.SerialException, ValueError) as exc:
            c = self._counters
            self._failed_in_row += 1
            if self._failed_in_row == 1:  # once per outage; the rest at DEBUG
                log.warning("%s: cannot open %s: %s (retrying with backoff)", self.name, self.path, exc)
            else:
                log.debug("%s: cannot open %s: %s", self.name, self.path, exc)
            self._update(open_failures=c.open_failures + 1, last_error=f"open: {exc}")
            return None
        device = os.path.realpath(self.path)
        self._failed_in_row = 0
        with self._lock:
            self._port = port
            self._bump(opens=self._counters.opens + 1, connected=True, device=device)
        log.info("%s: opened %s (%s) at %d bit/s", self.name, self.path, device, self.baudrate)
        return port

    def _read_loop(self, port: Any) -> None:
        opened = time.monotonic()
        while not self._stop.is_set():
            try:
                waiting = port.in_waiting
                data = port.read(waiting if waiting else 1)
                if data:
                    more = port.in_waiting
                    if more:
                        data += port.read(more)
            except (OSError, serial.SerialException) as exc:
                log.warning("%s: %s vanished or failed: %s (reopening)", self.name, self.path, exc)
                self._update(disconnects=self._counters.disconnects + 1, last_error=f"read: {exc}")
                return
            now_mono = time.monotonic()
            if not data:
                silent_since = self._last_byte_mono if self._last_byte_mono is not None else opened
                if (
                    self.silence_reopen_s is not None
                    and now_mono - max(silent_since, opened) > self.silence_reopen_s
                ):
                    log.warning("%s: no bytes for %.0f s, reopening", self.name, self.silence_reopen_s)
                    self._update(silence_reopens=self._counters.silence_reopens + 1)
                    return
                continue
            t = time.time()
            self._last_byte_mono = now_mono
            c = self._counters
            self._update(bytes=c.bytes + len(data), reads=c.reads + 1, last_byte_utc=t)
            try:
                self.on_bytes(t, bytes(data))
            except Exception:  # the consumer's bug must not kill the port thread
                log.exception("%s: byte consumer failed", self.name)
                self._update(callback_errors=self._counters.callback_errors + 1)
