"""A real mosquitto (Debian package `mosquitto`) on 127.0.0.1, configured per test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers.wait import wait_until


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    host: str
    port: int
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._accepts, 10, f"mosquitto to open {self.host}:{self.port}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_broker(tmp_path: Path, name: str, port: int, settings: str) -> Iterator[Broker]:
    """A real mosquitto with ``settings`` (listeners, auth, TLS ...) on ``port``, stopped on exit.

    As root, mosquitto would drop to user `mosquitto`, which cannot read or write pytest's private tmp
    dir (persistence, password and ACL files): it stays root then.
    """
    conf = tmp_path / f"{name}.conf"
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"log_dest none\n{user}{settings}")
    broker = Broker("127.0.0.1", port, conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
