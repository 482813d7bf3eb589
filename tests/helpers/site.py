"""A simulated site for the diagnose/status tests (the ``site`` fixture of conftest.py builds one).

SYNTHETIC devices in real time on pseudo-terminals: the firmware bridge (rain every 1 s, heartbeat +
wire every 1 s, geophone at 100 Hz) and a u-blox GNSS receiver (NAV-PVT + NAV-HPPOSLLH at 2 Hz, RTK
fixed); the repository's signed demo bundle; a real mosquitto (conftest ``mosquitto``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from typing import Any

from agent.demo.harness import toml_text
from agent.demo.run import REPO_BUNDLE, demo_config_data
from agent.demo.scenario import REFERENCE
from agent.sensors.gnss_sim import QualitySegment, SimConfig, Trajectory, simulate
from firmware_bridge.pty_device import PtyDevice
from firmware_bridge.scenario import RainStep, Scenario

REPO = Path(__file__).resolve().parents[2]
AGENT = [sys.executable, "-c", "from agent.cli import main; main()"]
SITE_S = 600.0  # the simulators run this long (real time) at most


class GnssPty:
    """A GNSS receiver on a pty, writing in real time from its own thread until stopped."""

    def __init__(self, rate_hz: float = 2.0, quality: QualitySegment | None = None) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        now = time.time()
        self.cfg = SimConfig(
            reference=REFERENCE,
            trajectory=Trajectory((0.0, SITE_S), (0.0, 1.0), (0.0, 1.0), (0.0, 0.0)),
            start_utc=now,
            rate_hz=rate_hz,
            duration_s=SITE_S,
            noise_mm=(1.0, 1.0, 2.0),
            quality=(quality or QualitySegment(0.0),),
            emit=("NAV-PVT", "NAV-HPPOSLLH"),
        )
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        """Like agent.sensors.gnss_sim.write_to_fd, but stoppable (the fd is closed only after)."""
        t0 = time.monotonic()
        for ep in simulate(self.cfg):
            if self.stopping.wait(max(0.0, t0 + (ep.t - self.cfg.start_utc) - time.monotonic())):
                return
            with contextlib.suppress(OSError):
                os.write(self.master, ep.data)

    def start(self) -> GnssPty:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(5)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def bridge_scenario(**changes: Any) -> Scenario:
    base: dict[str, Any] = dict(
        duration_s=SITE_S,
        start_utc=time.time(),
        rain=(RainStep(0.0, 2.0),),
        rain_period_s=1.0,
        rain_check_s=0.5,
        heartbeat_period_s=1.0,
        seismic_rate_hz=100,
        seismic_block=50,
    )
    return Scenario(**{**base, **changes})


def site_config(
    workdir: Path, host: str, port: int, gnss_path: str, bridge_path: str, **overrides: Any
) -> dict[str, Any]:
    data = demo_config_data(workdir, host, port, gnss_path, bridge_path, speed=1.0)
    data["daemon"]["refresh_steps_each_evaluation"] = False
    data["daemon"]["evaluate_interval_s"] = 0.5
    data["sensors"]["gnss"]["epoch_rate_hz"] = 2.0
    data["sensors"]["rain"] = {"frame_period_s": 1.0, "max_gap_s": 4.0}
    data["sensors"]["device"] = {"heartbeat_period_s": 1.0}
    data["mqtt"]["outbox"]["synchronous"] = "NORMAL"
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(toml_text(data), encoding="utf-8")
    path.chmod(0o644)
    return path


class Site:
    def __init__(self, tmp: Path, host: str, port: int, scenario: Scenario | None = None) -> None:
        self.tmp = tmp
        self.host, self.port = host, port
        self.gnss = GnssPty().start()
        self.bridge = PtyDevice(scenario or bridge_scenario()).start()
        self.data = site_config(tmp, host, port, self.gnss.path, self.bridge.port)
        self.config = write_config(tmp / "agent.toml", self.data)

    def rewrite(self, **overrides: Any) -> Path:
        self.data = site_config(self.tmp, self.host, self.port, self.gnss.path, self.bridge.port, **overrides)
        return write_config(self.config, self.data)

    def stop(self) -> None:
        self.bridge.stop()
        self.gnss.stop()


def run_agent(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEWS_LOG_LEVEL": "WARNING"}
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def diagnose_json(config: Path, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    proc = run_agent("diagnose", "--config", str(config), "--json", *extra)
    try:
        doc = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(f"no JSON: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}") from exc
    return proc.returncode, {c["name"]: c for c in doc["checks"]}


def statuses(checks: dict[str, dict[str, Any]], status: str) -> set[str]:
    return {n for n, c in checks.items() if c["status"] == status}


def copy_bundle(dst: Path) -> Path:
    shutil.copytree(REPO_BUNDLE / "demo", dst)
    return dst
