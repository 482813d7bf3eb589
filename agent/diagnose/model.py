"""The data of a diagnosis: a check (name, function, timeout), its result, and the shared context.

A check is a pure-ish function ``fn(ctx) -> Result``: it measures one thing and says PASS, WARN or FAIL
with the measured value and a one-line fix. Checks that need the same expensive measurement (a few
seconds of listening on a serial port, loading the bundle) share it through :meth:`Context.memo`, which
computes each key once even when several check threads ask at the same time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, TypeVar

from agent.config import AgentConfig

T = TypeVar("T")

STATUS_FILE = "status.json"
# Silence is a FAIL only when the listen window holds this many periods of the device (jitter, bursts
# on a loaded gateway); shorter windows say WARN "listen longer".
SILENCE_MARGIN = 2.0
FRESH_STATUS_S = 30.0  # status.json younger than this (and this many evaluation intervals) = daemon running


class Status(IntEnum):
    """Ordered by severity: the worst result decides the exit code (0, 1, 2)."""

    PASS = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Result:
    name: str
    status: Status
    value: str
    fix: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status.name,
            "value": self.value,
            "fix": self.fix,
            "elapsed_s": round(self.elapsed_s, 3),
        }
        if self.detail:
            out["detail"] = self.detail
        return out


def passed(name: str, value: str, /, **detail: Any) -> Result:
    return Result(name, Status.PASS, value, "", detail)


def warned(name: str, value: str, fix: str, /, **detail: Any) -> Result:
    return Result(name, Status.WARN, value, fix, detail)


def failed(name: str, value: str, fix: str, /, **detail: Any) -> Result:
    return Result(name, Status.FAIL, value, fix, detail)


def not_measured(name: str, because: str) -> Result:
    """A check that depends on another that failed: WARN (cannot tell), pointing at the real failure."""
    return Result(name, Status.WARN, f"not measured: {because} failed", f"fix {because} first")


@dataclass(frozen=True)
class Check:
    """One row of the check table: ``fn(ctx)`` must return within ``timeout_s`` (else it FAILs)."""

    name: str
    fn: Callable[[Context], Result]
    timeout_s: float = 10.0
    description: str = ""


@dataclass
class Options:
    listen_s: float = 3.0  # how long ports are read when the daemon does not own them
    expect_daemon: bool = False  # a stopped daemon is a FAIL (else reported, PASS)
    roundtrip_timeout_s: float = 5.0
    selftest: bool = False  # opt-in: also run `agent selftest` on the installed bundle (inference.selftest)


class Context:
    """What every check may read: the configuration, the daemon's status (if it runs), shared memos."""

    def __init__(
        self,
        cfg: AgentConfig,
        *,
        config_path: Path | None = None,
        options: Options | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.options = options or Options()
        self.clock = clock
        self._memo: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.daemon_status, self.status_age_s = read_daemon_status(cfg, clock())

    @property
    def daemon_running(self) -> bool:
        return self.daemon_status is not None

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """``compute()`` once per key; concurrent callers wait for the first one. Exceptions propagate."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                try:
                    self._memo[key] = ("ok", compute())
                except Exception as exc:
                    self._memo[key] = ("err", exc)
            kind, value = self._memo[key]
        if kind == "err":
            raise value
        return value  # type: ignore[no-any-return,unused-ignore]


def status_path(cfg: AgentConfig) -> Path:
    return cfg.daemon.state_dir / STATUS_FILE


def fresh_limit_s(cfg: AgentConfig) -> float:
    """How old status.json may be for the daemon to count as running (it rewrites it every evaluation)."""
    return max(FRESH_STATUS_S, 6.0 * cfg.daemon.evaluate_interval_s)


def read_status_file(cfg: AgentConfig) -> tuple[dict[str, Any] | None, float | None]:
    """(status, mtime) of the daemon's status.json, or (None, None) when missing or unreadable."""
    path = status_path(cfg)
    try:
        mtime = path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    return (data, mtime) if isinstance(data, dict) else (None, None)


def read_daemon_status(cfg: AgentConfig, now: float) -> tuple[dict[str, Any] | None, float | None]:
    """The daemon's status when it is fresh (the daemon runs), else None; and the file's age (s)."""
    data, mtime = read_status_file(cfg)
    if data is None or mtime is None:
        return None, None
    age = max(0.0, now - mtime)
    if age > fresh_limit_s(cfg) or data.get("fatal"):
        return None, age
    return data, age


def fmt_age(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "never"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
