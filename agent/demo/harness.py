"""The demo site with the daemon in its own process: for fault tests (kill -9), replays and benchmarks.

The simulators run in the calling process on pseudo-terminals; `agent run --config FILE` runs as a
subprocess on a simulated clock (hidden options ``--clock-speed/--clock-start/--clock-anchor``)
anchored to a wall-clock second, so a daemon restarted on the same state directory resumes the same
scenario time. Everything here is SYNTHETIC (the demo's storm scenario).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.demo.run import Simulators, demo_config_data
from agent.demo.scenario import START_UTC, DemoScenario
from agent.errors import ConfigError
from firmware_bridge.pty_device import PtyDevice

log = logging.getLogger(__name__)


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{value} cannot be written to TOML here", fix="use a finite number")
        return repr(value)
    if isinstance(value, str | Path):
        text = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_scalar(v) for v in value) + "]"
    raise ConfigError(f"{type(value).__name__} cannot be written to TOML", fix="use plain data")


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, Mapping) for v in value)


def toml_text(data: Mapping[str, Any], prefix: str = "") -> str:
    """Plain data (str/int/float/bool/lists, nested dicts, lists of dicts) as TOML text."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, Sequence[Mapping[str, Any]]]] = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif _is_table_list(value):
            arrays.append((key, value))
        elif value is not None:
            lines.append(f"{key} = {_toml_scalar(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, table in tables:
        name = f"{prefix}{key}"
        body = toml_text(table, f"{name}.")
        out += f"\n[{name}]\n{body}"
    for key, items in arrays:
        name = f"{prefix}{key}"
        for item in items:
            out += f"\n[[{name}]]\n{toml_text(item, f'{name}.')}"
    return out


class DaemonProcess:
    """`agent run` as a subprocess on the demo's simulated clock; its log goes to ``log_path``."""

    def __init__(self, config_path: Path, speed: float, anchor_wall: float, log_path: Path) -> None:
        self.config_path, self.speed, self.anchor_wall = config_path, speed, anchor_wall
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> DaemonProcess:
        cmd = [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(self.config_path),
            "--clock-speed",
            repr(self.speed),
            "--clock-start",
            repr(START_UTC),
            "--clock-anchor",
            repr(self.anchor_wall),
        ]
        with open(self.log_path, "ab") as log_fh:
            log_fh.write(f"---- start {self.starts + 1} at {time.time():.3f}\n".encode())
            log_fh.flush()
            self.proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT)
        self.starts += 1
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ConfigError("the daemon process is not running", fix="call start() first")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs (what a crash or power cut does to the process)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (graceful stop, as systemd does); SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


class SubprocessSite:
    """Simulators here, the daemon in a subprocess, one scenario clock anchored at ``anchor_wall``.

    ``start(startup_s)``: launches the daemon with its clock anchored ``startup_s`` from now (the
    daemon's clock reads the scenario start until then), waits for it to come up, and starts the
    simulators at the anchor so both sides agree on scenario time.
    """

    def __init__(
        self,
        scenario: DemoScenario,
        workdir: Path,
        host: str,
        port: int,
        speed: float,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        bridge: PtyDevice | None = None,
    ) -> None:
        """``overrides``: config sections merged over the demo's; ``bridge``: an instrumented device."""
        self.scenario, self.workdir, self.speed = scenario, workdir, speed
        workdir.mkdir(parents=True, exist_ok=True)
        self.sims = Simulators(scenario, speed, bridge=bridge)
        data = demo_config_data(workdir, host, port, self.sims.gnss_path, self.sims.bridge_path, speed)
        for section, values in (overrides or {}).items():
            _merge(data.setdefault(section, {}), values)
        self.config_path = workdir / "agent.toml"
        self.config_path.write_text(toml_text(data), encoding="utf-8")
        os.chmod(self.config_path, 0o640)
        self.state_dir = workdir / "state"
        self.outbox_path = Path(data["mqtt"]["outbox"]["path"])
        self.anchor_wall = math.nan
        self.daemon: DaemonProcess | None = None

    def start(self, startup_s: float = 4.0) -> SubprocessSite:
        self.anchor_wall = time.time() + startup_s
        self.daemon = DaemonProcess(
            self.config_path, self.speed, self.anchor_wall, self.workdir / "daemon.log"
        ).start()
        self.wait_status(timeout=startup_s + 30.0)
        delay = self.anchor_wall - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            log.warning("daemon came up %.2f s after the clock anchor: simulators start late", -delay)
        self.sims.start()
        return self

    def scenario_time(self) -> float:
        """The scenario clock the daemon runs on (epoch seconds)."""
        return START_UTC + max(0.0, time.time() - self.anchor_wall) * self.speed

    def wait_status(self, timeout: float, newer_than: float = 0.0) -> dict[str, Any]:
        """Wait until the daemon wrote ``status.json`` (after ``newer_than``, wall time) and return it."""
        import json

        path = self.state_dir / "status.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.daemon is not None and not self.daemon.alive():
                raise ConfigError(
                    f"agent run exited early: see {self.daemon.log_path}",
                    fix=f"read its log {self.daemon.log_path}",
                )
            with contextlib.suppress(OSError, ValueError):
                if path.stat().st_mtime > newer_than:
                    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
                    return data
            time.sleep(0.05)
        raise ConfigError(f"the daemon wrote no {path} within {timeout:g} s", fix="read daemon.log")

    def restart(self, timeout: float = 30.0) -> None:
        """Start the daemon again on the same state directory and clock anchor."""
        if self.daemon is None:
            raise ConfigError("the daemon was never started", fix="call start() first")
        before = time.time()
        self.daemon.start()
        self.wait_status(timeout, newer_than=before)

    def stop(self) -> int:
        code = self.daemon.terminate() if self.daemon is not None else 0
        self.sims.stop()
        return code


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
