"""Shared fixtures: a real mosquitto broker on a free loopback port, pseudo-terminals, shared data."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.broker import Broker, free_port, running_broker
from helpers.site import Site
from helpers.toolchain import HAS_TORCH, TOOLCHAIN_IMPORT
from helpers.wait import wait_until

REPO = Path(__file__).resolve().parent.parent

# --- the gateway test subset -------------------------------------------------------------------------
# A gateway install (Python 3.10 on JetPack 6, `pip install '.[test]'`) has no torch and no toolchain
# extra. There, test modules that import torch, export/ or the bundle-building test helpers are not
# collected; the run says which and why at the end. With torch installed everything is collected.
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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{NO_DATA} {SHARED_DATA} (set LEWS_SHARED_DATA)")
    return SHARED_DATA


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


@pytest.fixture
def site(tmp_path: Path, mosquitto: Broker) -> Iterator[Site]:
    """A simulated site (GNSS receiver and firmware bridge on ptys, in real time) with its config."""
    s = Site(tmp_path, mosquitto.host, mosquitto.port)
    try:
        wait_until(lambda: s.bridge.bytes_written > 0, 10, "the bridge's first frames on the wire")
        yield s
    finally:
        s.stop()
