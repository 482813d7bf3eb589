"""Replay a raw capture through the live pipeline: same decoders, processors, store and steps.

The capture (agent/sensors/capture.py) holds every read of every port with its receive time. Replay
hands each record to :meth:`agent.sensors.pipeline.Pipeline.ingest` in time order, exactly as the port
threads do live (only the pty/serial read is skipped), then recomputes the steps. ``speed`` paces the
records at N x real time; ``None`` runs as fast as the CPU allows.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent.errors import CaptureError, ConfigError, Unsupported
from agent.features.aggregate import StepTable
from agent.features.samples import Sample
from agent.features.store import Store
from agent.sensors.capture import ReadStats, iter_capture
from agent.sensors.pipeline import KIND_OF_FORMAT, Pipeline
from agent.sensors.replay_columnar import replay_columnar
from agent.sensors.settings import SensorsConfig, SerialPortConfig

log = logging.getLogger(__name__)


def replay_config(cfg: SensorsConfig, capture_dir: Path) -> SensorsConfig:
    """The configuration with its ports replaced by the capture's ports (kinds from config or format)."""
    from agent.sensors.capture import read_index

    index = read_index(capture_dir)
    configured = {p.name: p for p in cfg.ports}
    ports = []
    for name, entry in sorted(index.ports.items()):
        kind = KIND_OF_FORMAT[entry.format]
        known = configured.get(name)
        if known is not None and known.kind != kind:
            raise CaptureError(
                f"capture port {name!r} is {entry.format!r} but the configuration says kind {known.kind!r}",
                fix="replay with the configuration the capture was recorded with",
            )
        path = str(Path(capture_dir) / entry.file)
        ports.append(SerialPortConfig.model_validate({"name": name, "path": path, "kind": kind}))
    if not ports:
        raise CaptureError(f"capture {capture_dir} has no ports", fix="record at least one port")
    return cfg.model_copy(update={"ports": ports})


@dataclass
class ReplayResult:
    """What a replay did, for the summary and for tests."""

    records: int = 0
    bytes: int = 0
    capture_s: float = 0.0  # time span of the capture (receive times)
    wall_s: float = 0.0
    samples: Counter[str] = field(default_factory=Counter)  # per channel
    steps: dict[int, int] = field(default_factory=dict)  # step length -> steps written
    counters: dict[str, Any] = field(default_factory=dict)  # pipeline.counters()
    truncated_tail_bytes: int = 0
    mode: str = "records"  # "columnar": agent/sensors/replay_columnar.py; "records": one read at a time
    columnar_refused: str | None = None  # why the columnar replay could not reproduce this capture

    @property
    def speed(self) -> float:
        """Capture time per wall time (x real time)."""
        return self.capture_s / self.wall_s if self.wall_s > 0 else math.inf

    def drops(self) -> dict[str, int]:
        """Every counted drop of every stage, flattened to ``stage.reason: n`` (non-zero only)."""
        out: dict[str, int] = {}
        _flatten_drops("", self.counters, out)
        return {k: v for k, v in out.items() if v}


# Counter names that are drops or errors (everything else is throughput), as data.
DROP_WORDS = ("drop", "error", "reject", "missing", "gap", "implausible", "truncated", "overlap", "bad_")


def _flatten_drops(prefix: str, obj: Any, out: dict[str, int]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                _flatten_drops(key, v, out)
            elif isinstance(v, int | float) and any(w in key for w in DROP_WORDS):
                out[key] = int(v)


class JsonlWriter:
    """One JSON object per line: every sample as decoded, then every step written."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh
        self.lines = 0

    def samples(self, port: str, samples: Sequence[Sample]) -> None:
        for s in samples:
            self.fh.write(
                json.dumps({"type": "sample", "port": port, "t": s.t, "channel": s.channel, "value": s.value})
                + "\n"
            )
            self.lines += 1

    def steps(self, table: StepTable) -> None:
        for i, start in enumerate(table.times):
            row: dict[str, Any] = {"type": "step", "step_s": table.step_s, "start": float(start)}
            for col, values in table.values.items():
                v = float(values[i])
                row[col] = None if math.isnan(v) else v
                row[f"{col}.completeness"] = float(table.completeness[col][i])
            self.fh.write(json.dumps(row) + "\n")
            self.lines += 1


def replay(
    capture_dir: Path,
    cfg: SensorsConfig,
    store: Store,
    *,
    speed: float | None = None,
    jsonl: IO[str] | None = None,
    hourly: bool = True,
    columnar: bool = True,
) -> ReplayResult:
    """Feed a capture through the pipeline into ``store``; ``speed`` None = as fast as possible.

    As fast as possible into an empty store, without ``jsonl``, the columnar replay runs (the same
    store and counters, agent/sensors/replay_columnar.py) unless it refuses the capture; else, and
    with ``columnar=False``, every read goes through ``Pipeline.ingest`` in time order."""
    if speed is not None and not speed > 0:
        raise ConfigError(f"replay speed {speed} must be > 0", fix="use --speed max or a positive factor")
    refused = None
    if columnar and speed is None and jsonl is None:
        try:
            done = replay_columnar(capture_dir, replay_config(cfg, capture_dir), store, hourly=hourly)
        except Unsupported as exc:
            refused = str(exc)
            log.info("columnar replay not possible (%s): replaying read by read", exc)
        else:
            return _result(done)
    # Replay waits for the store instead of dropping: it is never behind a live port.
    pipeline = Pipeline(replay_config(cfg, capture_dir), store, hourly=hourly, store_wait_s=None)
    writer = JsonlWriter(jsonl) if jsonl is not None else None
    if writer is not None:
        pipeline.subscribe(writer.samples)
    result = ReplayResult(columnar_refused=refused)
    stats = ReadStats()
    wall0 = time.monotonic()
    t_first: float | None = None
    t_last = -math.inf
    for port, t, data in iter_capture(Path(capture_dir), stats):
        if t_first is None:
            t_first = t
        t_last = max(t_last, t)
        if speed is not None:
            delay = wall0 + (t - t_first) / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        pipeline.ingest(port, t, data)
        result.records += 1
        result.bytes += len(data)
    pipeline.finish()
    tables = pipeline.refresh_steps(final=True)
    result.wall_s = time.monotonic() - wall0
    result.capture_s = max(0.0, t_last - t_first) if t_first is not None else 0.0
    for table in tables:
        result.steps[table.step_s] = len(table)
        if writer is not None:
            writer.steps(table)
    result.counters = pipeline.counters()
    return _finish_result(result, stats)


def _finish_result(result: ReplayResult, stats: ReadStats) -> ReplayResult:
    result.truncated_tail_bytes = stats.truncated_tail
    result.counters["capture"] = {"truncated_tail_bytes": stats.truncated_tail, "records": stats.records}
    for key, n in result.counters["pipeline"].items():
        if key.startswith("samples."):
            result.samples[key.removeprefix("samples.")] = n
    return result


def _result(done: dict[str, Any]) -> ReplayResult:
    result = ReplayResult(
        records=done["records"],
        bytes=done["bytes"],
        capture_s=done["capture_s"],
        wall_s=done["wall_s"],
        steps={table.step_s: len(table) for table in done["tables"]},
        counters=done["counters"],
        mode="columnar",
    )
    return _finish_result(result, done["stats"])
