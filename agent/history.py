"""Alert-level and forecast history on the gateway: an append-only JSON-lines file in the state dir.

Alert events leave the gateway through the outbox and are deleted there once the broker acknowledged
them, so nothing on the gateway remembers what the levels were last week. The daemon records here:

* ``record_status(status)`` after each evaluation (the dict of ``Daemon.status()``): one ``levels``
  line whenever the published level or any source level changed (plus a keep-alive line every
  ``keepalive_s`` of data time so a plot knows the level held);
* ``record_forecast(...)`` for each new forecast: one ``forecast`` line.

Lines are small JSON objects (``kind``, ``t`` in epoch seconds, ...). Reading skips and counts lines that
are not valid (a power cut can leave half a line at the end). The file is trimmed to its newest half
when it grows past ``max_bytes``. Pure helpers (``levels_of``, ``parse_line``) keep the rules testable.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HISTORY_FILE = "history.jsonl"
NO_DATA = -1


@dataclass(frozen=True)
class LevelRecord:
    t: float
    published: int | None
    sources: dict[str, int]


@dataclass(frozen=True)
class ForecastRecord:
    t: float  # when the forecast was made (data time)
    valid_from: float
    horizon_s: float
    value_mm: float
    lo_mm: float
    hi_mm: float
    model: str = ""


@dataclass
class HistoryData:
    levels: list[LevelRecord] = field(default_factory=list)
    forecasts: list[ForecastRecord] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def levels_of(status: Mapping[str, Any]) -> tuple[int | None, dict[str, int]]:
    """(published level, source -> level) from a daemon status dict; unknown shapes give NO_DATA."""
    pub = status.get("published_level")
    published = int(pub) if isinstance(pub, int | float) and not isinstance(pub, bool) else None
    sources: dict[str, int] = {}
    raw = status.get("sources")
    if isinstance(raw, Mapping):
        for name, src in raw.items():
            lvl = src.get("level") if isinstance(src, Mapping) else None
            if isinstance(lvl, int | float) and not isinstance(lvl, bool) and math.isfinite(lvl):
                sources[str(name)] = int(lvl)
            else:
                sources[str(name)] = NO_DATA
    return published, sources


def _finite(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(float(x)):
        raise ValueError(f"not a finite number: {x!r}")
    return float(x)


def parse_line(line: str) -> LevelRecord | ForecastRecord:
    """One history line -> its record; raises ValueError (with the reason) when it is not one."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    kind = obj.get("kind")
    if kind == "levels":
        pub = obj.get("published")
        srcs = obj.get("sources", {})
        if not isinstance(srcs, dict):
            raise ValueError("sources is not an object")
        return LevelRecord(
            t=_finite(obj.get("t")),
            published=None if pub is None else int(_finite(pub)),
            sources={str(k): int(_finite(v)) for k, v in srcs.items()},
        )
    if kind == "forecast":
        return ForecastRecord(
            t=_finite(obj.get("t")),
            valid_from=_finite(obj.get("valid_from")),
            horizon_s=_finite(obj.get("horizon_s")),
            value_mm=_finite(obj.get("value_mm")),
            lo_mm=_finite(obj.get("lo_mm")),
            hi_mm=_finite(obj.get("hi_mm")),
            model=str(obj.get("model", "")),
        )
    raise ValueError(f"unknown kind {kind!r}")


def read_history(path: Path, start: float = -math.inf, end: float = math.inf) -> HistoryData:
    """Records with ``start <= t < end``, in file order; bad lines are skipped and counted."""
    out = HistoryData()
    if not path.is_file():
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = parse_line(line)
            except ValueError as exc:
                out.dropped["bad_line"] += 1
                log.debug("history %s: skipped line: %s", path, exc)
                continue
            if not start <= rec.t < end:
                continue
            if isinstance(rec, LevelRecord):
                out.levels.append(rec)
            else:
                out.forecasts.append(rec)
    if out.dropped:
        log.warning("history %s: skipped %d unreadable line(s)", path, out.dropped["bad_line"])
    return out


class History:
    """Appends level changes and forecasts to ``<state_dir>/history.jsonl`` (thread-safe)."""

    def __init__(self, path: Path, *, keepalive_s: float = 3600.0, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.keepalive_s = keepalive_s
        self.max_bytes = max_bytes
        self.counters: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._last: tuple[int | None, dict[str, int]] | None = None
        self._last_t = -math.inf

    def record_status(self, status: Mapping[str, Any]) -> bool:
        """Record the levels of a status dict if they changed (or the keep-alive is due)."""
        t = status.get("time")
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(float(t)):
            self.counters["dropped.no_time"] += 1
            return False
        levels = levels_of(status)
        with self._lock:
            if levels == self._last and float(t) - self._last_t < self.keepalive_s:
                return False
            self._last, self._last_t = levels, float(t)
        rec = {"kind": "levels", "t": float(t), "published": levels[0], "sources": levels[1]}
        return self._append([rec])

    def record_forecast(
        self,
        *,
        t: float,
        valid_from: float,
        horizon_s: float,
        value_mm: float,
        lo_mm: float,
        hi_mm: float,
        model: str = "",
    ) -> bool:
        values = (t, valid_from, horizon_s, value_mm, lo_mm, hi_mm)
        if not all(math.isfinite(float(v)) for v in values):
            self.counters["dropped.not_finite"] += 1
            return False
        rec = {
            "kind": "forecast",
            "t": float(t),
            "valid_from": float(valid_from),
            "horizon_s": float(horizon_s),
            "value_mm": float(value_mm),
            "lo_mm": float(lo_mm),
            "hi_mm": float(hi_mm),
            "model": model,
        }
        return self._append([rec])

    def _append(self, records: Iterable[dict[str, Any]]) -> bool:
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(text)
                if self.path.stat().st_size > self.max_bytes:
                    self._trim()
            except OSError as exc:
                self.counters["dropped.write_failed"] += 1
                n = self.counters["dropped.write_failed"]
                if n == 1 or n % 100 == 0:  # a full disk: once, then every 100th
                    log.warning("history %s not written (%d times): %s", self.path, n, exc)
                return False
        self.counters["written"] += 1
        return True

    def _trim(self) -> None:
        """Keep the newest half of the lines (atomic replace)."""
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
        keep = lines[len(lines) // 2 :]
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text("".join(keep), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        self.counters["trimmed_lines"] += len(lines) - len(keep)


RISKMAP_FILE = "riskmap.npz"


def save_riskmap(
    state_dir: Path, probability: Any, *, t: float, threshold: float | None = None, synthetic: bool = False
) -> Path:
    """Keep the latest risk map for the report and status page: ``<state_dir>/riskmap.npz``, replaced
    atomically (``probability`` (H, W) in [0, 1], ``t`` epoch s, optional ``threshold``)."""
    import numpy as np

    prob = np.asarray(probability, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"risk map must be 2-D (H, W), got shape {prob.shape}")
    path = Path(state_dir) / RISKMAP_FILE
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays: dict[str, Any] = {"probability": prob, "t": np.float64(t), "synthetic": np.bool_(synthetic)}
    if threshold is not None:
        arrays["threshold"] = np.float64(threshold)
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:  # disk full, I/O error: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def level_since(levels: Iterable[LevelRecord], level: int | None) -> float | None:
    """Time the published level last became ``level`` (pure); None when the history does not say."""
    since: float | None = None
    for rec in levels:
        if rec.published is None:
            continue
        if rec.published != level:
            since = None
        elif since is None:
            since = rec.t
    return since
