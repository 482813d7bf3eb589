"""systemd notification protocol (sd_notify): READY, WATCHDOG, STATUS, STOPPING over $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


START_EXTEND_S = 300.0  # EXTEND_TIMEOUT_USEC the daemon sends while the bundle verifies at start


class Notifier:
    """Sends sd_notify datagrams when run under systemd (Type=notify); a no-op elsewhere."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.sent = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def watchdog_interval_s(self) -> float | None:
        """Half of WatchdogSec (systemd's advice), or None when no watchdog is configured for us."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2e6
        except ValueError:
            return None

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(addr)
                sock.sendall(message.encode())
        except OSError as exc:
            self.failed += 1
            log.warning("sd_notify %r failed: %s", message.split("=")[0], exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def extend_timeout(self, seconds: float = START_EXTEND_S, why: str = "") -> bool:
        """Ask systemd for `seconds` more before the start (or stop) times out: bundle verification
        and TensorRT engine loading at start can outlast TimeoutStartSec on a slow Jetson."""
        msg = f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}"
        return self.notify(msg + (f"\nSTATUS={why}" if why else ""))
