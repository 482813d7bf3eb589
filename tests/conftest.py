"""Shared fixtures: a real mosquitto broker on a free loopback port, pseudo-terminals, shared data."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# --- the gateway test subset -------------------------------------------------------------------------
# A gateway install (Python 3.10 on JetPack 6, `pip install '.[test]'`) has no torch and no toolchain
# extra. There, test modules that import torch, export/ or the bundle-building test helpers are not
# collected; the run says which and why at the end. With torch installed everything is collected.
TOOLCHAIN_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+(?:torch|export|bundle_testlib|tests\.bundle_testlib)\b", re.M
)
HAS_TORCH = importlib.util.find_spec("torch") is not None
NOT_COLLECTED: set[str] = set()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if HAS_TORCH or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    if TOOLCHAIN_IMPORT.search(collection_path.read_text(encoding="utf-8")):
        NOT_COLLECTED.add(collection_path.name)
        return True
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say in the closing lines what did not run: modules of the toolchain, real-data tests without data."""
    if NOT_COLLECTED:
        terminalreporter.write_line(
            f"gateway subset: {len(NOT_COLLECTED)} test modules not collected because torch is not "
            f"installed (they import torch or export/): {', '.join(sorted(NOT_COLLECTED))}"
        )
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if NO_DATA in str(getattr(r, "longrepr", ""))]
    if missing:
        terminalreporter.write_line(
            f"REAL DATA MISSING: {len(missing)} real-data tests skipped; looked for {SHARED_DATA} "
            "(put the clone beside shared/ or set LEWS_SHARED_DATA=/path/to/shared/data)",
            red=True,
            bold=True,
        )


SHARED_DATA = Path(os.environ.get("LEWS_SHARED_DATA", REPO.parent / "shared" / "data"))
NO_DATA = "shared data not found at"  # the skip reason the closing summary counts


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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not open {self.host}:{self.port}")

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{NO_DATA} {SHARED_DATA} (set LEWS_SHARED_DATA)")
    return SHARED_DATA


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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on 127.0.0.1 and a free port (Debian package `mosquitto`), keeping sessions
    across ``restart()``."""
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.fail("mosquitto is not installed: run `make test` (it installs the Debian package)")
    port = free_port()
    persist = tmp_path / "mosq-data"
    persist.mkdir()
    settings = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {persist}/\n"
    )
    with running_broker(tmp_path, "mosquitto", port, settings) as broker:
        yield broker
