"""The columnar replay: a whole capture through array decoders into one bulk load of a new store.

The same store, steps and counters as the record-by-record replay (agent/sensors/replay.py), which
stays the reference: GNSS ports are decoded as arrays (agent/sensors/gnss_columnar.py), bridge ports
too (SEISMIC frames as columns, the seismic processor fed runs of blocks: bridge_columnar.py), every
sample checked against the time of the read that emitted it as live, each channel written in one
queued write (``Store.put_columns``), then the steps computed as the pipeline's final refresh does.
Where the result could differ from the reference (the clock correction would ever apply, a stream the
array decoders do not cover, a store that is not empty) :class:`Unsupported` is raised before
anything is written, and the caller replays record by record.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import CaptureError, Unsupported
from agent.features.aggregate import DAY_S, HOUR_S, StepTable, aggregate, step_start
from agent.features.samples import CHANNEL_AGGREGATES, Sample
from agent.features.store import Store
from agent.sensors.bridge_columnar import replay_bridge_port
from agent.sensors.capture import MAGIC, MAX_RECORD, RECORD, ReadStats, read_index
from agent.sensors.clock import MAX_CORRECTION_S, MIN_PLAUSIBLE_UTC
from agent.sensors.decoders import GnssDecoder
from agent.sensors.gnss_columnar import GnssColumns, decode_gnss
from agent.sensors.pipeline import STATE_SCOPE, Pipeline
from agent.sensors.settings import SensorsConfig

log = logging.getLogger(__name__)
# The capture is held in memory with its arrays: about 10 x its size (measured: +64 MiB for a 6.6 MB,
# +241 MiB for a 26.5 MB capture). Larger captures replay record by record.
MAX_CAPTURE_BYTES = 128_000_000


@dataclass(frozen=True)
class PortRecords:
    """One port file: the receive time of each read, the reads' bytes joined, where each read ends."""

    t: np.ndarray
    data: bytes
    ends: np.ndarray


def read_records(path: Path, stats: ReadStats) -> PortRecords:
    """The whole port file at once (the checks and counters of capture.iter_records)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CaptureError(
            f"cannot open capture file {path}: {exc}", fix="check the capture directory"
        ) from exc
    if data[: len(MAGIC)] != MAGIC:
        raise CaptureError(
            f"{path} does not start with {MAGIC!r}", fix="pass a .cap file written by the agent"
        )
    times: list[float] = []
    starts: list[int] = []
    lengths: list[int] = []
    pos, size, head = len(MAGIC), len(data), RECORD.size
    unpack = RECORD.unpack_from
    while size - pos >= head:
        t, n = unpack(data, pos)
        if n > MAX_RECORD:
            raise CaptureError(f"{path}: record of {n} bytes at offset {pos}", fix="corrupt")
        if size - pos - head < n:
            break
        times.append(t)
        starts.append(pos + head)
        lengths.append(n)
        pos += head + n
    stats.truncated_tail += size - pos
    view = memoryview(data)
    joined = b"".join([view[a : a + n] for a, n in zip(starts, lengths, strict=True)])
    stats.records += len(lengths)
    stats.bytes += len(joined)
    return PortRecords(np.asarray(times, dtype=np.float64), joined, np.cumsum(lengths, dtype=np.int64))


class DecodedPort:
    """Stands in the pipeline for a port decoded as arrays: its counters, nothing left to finish."""

    def __init__(self, counters: dict[str, Any]) -> None:
        self._counters = counters

    def feed(self, t: float, data: bytes) -> list[Sample]:
        raise Unsupported("a columnar port is not fed record by record")

    def finish(self) -> list[Sample]:
        return []

    def counters(self) -> dict[str, Any]:
        return self._counters


def _check_clock(pipeline: Pipeline, cols: GnssColumns, rec: PortRecords) -> None:
    """Unsupported if any receiver time would make the clock correction apply (as live, the median
    of the last observations beyond ``wrong_above_s``): then every stamp would move."""
    clock = pipeline.time
    if not clock.enabled or not len(cols.fix_t):
        return
    t_sys = rec.t[cols.fix_record]
    plausible = (cols.fix_t >= MIN_PLAUSIBLE_UTC) & ~(
        (t_sys >= MIN_PLAUSIBLE_UTC) & (np.abs(cols.fix_t - t_sys) > MAX_CORRECTION_S)
    )
    if np.any(np.abs(cols.fix_t - t_sys)[plausible] > clock.wrong_above_s - 1e-3):
        raise Unsupported("the system clock of the capture is off GNSS time (the correction applies)")


def _gnss_port(pipeline: Pipeline, port: str, rec: PortRecords) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    decoder = pipeline.decoders[port]
    if not isinstance(decoder, GnssDecoder):
        raise Unsupported(f"port {port} is not a GNSS decoder")
    cols = decode_gnss(rec.data, rec.ends, decoder.proc.cfg)
    _check_clock(pipeline, cols, rec)
    pipeline.decoders[port] = DecodedPort(cols.counters)
    total = len(rec.data)
    if not len(cols.t):
        pipeline.stats.update({f"bytes.{port}": total, f"done.{port}": total})
        return {}
    t_read = np.where(cols.emit_record >= 0, rec.t[cols.emit_record], rec.t[-1])
    keep = (cols.t >= t_read - pipeline.max_sample_lag_s) & (cols.t <= t_read + pipeline.max_sample_lead_s)
    per_epoch = len(cols.values)
    dropped = int(np.count_nonzero(~keep)) * per_epoch
    stats = {f"bytes.{port}": total, f"done.{port}": total}
    stats["clock.stamped_gnss"] = int(np.count_nonzero(cols.emit_record >= 0)) * per_epoch
    if dropped:
        stats["drops.implausible_time"] = dropped
        log.warning("%s: %d samples far from their read time dropped (counted)", port, dropped)
    pipeline.stats.update(stats)
    out = {ch: (cols.t[keep], v[keep]) for ch, v in cols.values.items()}
    if np.any(keep):
        t_kept = cols.t[keep]
        pipeline.note_samples(
            {ch: len(t) for ch, (t, _) in out.items()}, float(t_kept.min()), float(t_kept.max())
        )
    return out


def _final_steps(
    pipeline: Pipeline, store: Store, arrays: dict[str, tuple[np.ndarray, np.ndarray]]
) -> list[StepTable]:
    """``Pipeline.refresh_steps(final=True)`` of the new store, from the arrays just queued instead of
    reading them back: ``Store.read_samples`` gives each stored channel (finite rows, by name) in time
    order, ties in insertion order, which is what a stable sort of the arrays gives."""
    if not (math.isfinite(pipeline.t_min) and math.isfinite(pipeline.t_max)):
        return []
    samples = {}
    for ch in sorted(arrays):
        t, v = arrays[ch]
        good = np.isfinite(t) & np.isfinite(v)
        if ch in CHANNEL_AGGREGATES and np.any(good):
            order = np.argsort(t[good], kind="stable")
            samples[ch] = (t[good][order], v[good][order])
    tables = []
    for step_s in (DAY_S, HOUR_S) if pipeline.hourly else (DAY_S,):
        lo = step_start(pipeline.t_min, step_s)
        hi = step_start(pipeline.t_max + 1e-6 - 1e-9, step_s) + step_s  # Store.refresh_steps' bounds
        table = aggregate(samples, step_s, lo, hi, pipeline.expect)
        if len(table):
            store.put_steps(table)
        tables.append(table)
    return tables


class _Collect:
    """Subscriber: the samples the pipeline passes on, per channel, in order."""

    def __init__(self) -> None:
        self.t: dict[str, list[float]] = {}
        self.v: dict[str, list[float]] = {}

    def __call__(self, port: str, samples: Any) -> None:
        for s in samples:
            self.t.setdefault(s.channel, []).append(s.t)
            self.v.setdefault(s.channel, []).append(s.value)


def replay_columnar(capture_dir: Path, cfg: SensorsConfig, store: Store, *, hourly: bool) -> dict[str, Any]:
    """Replay into an empty ``store``; returns what ``ReplayResult`` holds (see replay.replay)."""
    if any(store.channels().values()) or store.counters():
        raise Unsupported("the store is not empty (the columnar replay writes a new store)")
    wall0 = time.monotonic()
    stats = ReadStats()
    index = read_index(capture_dir)
    size = sum((Path(capture_dir) / e.file).stat().st_size for e in index.ports.values())
    if size > MAX_CAPTURE_BYTES:
        raise Unsupported(
            f"a capture of {size / 1e6:.0f} MB (held in memory: at most {MAX_CAPTURE_BYTES / 1e6:.0f} MB)"
        )
    records = {
        name: read_records(Path(capture_dir) / e.file, stats) for name, e in sorted(index.ports.items())
    }
    t_all = [rec.t for rec in records.values() if len(rec.t)]
    span = max(float(t.max()) for t in t_all) - min(float(t[0]) for t in t_all) if t_all else 0.0
    if span > store.cfg.retention_days * 86400.0 - 3600.0:
        # the store prunes by the newest sample of each committed batch: the order batches arrive in
        # would decide what is kept, and the bulk load has other batches than the record replay
        raise Unsupported("a capture longer than the store's retention")
    pipeline = Pipeline(cfg, None, hourly=hourly, store_wait_s=None)
    collect = _Collect()
    pipeline.subscribe(collect)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    kinds = {p.name: p.kind for p in cfg.enabled_ports()}
    for name, rec in records.items():  # GNSS first: the clock check covers every port
        if kinds.get(name) == "gnss" and len(rec.t):
            for ch, (t, v) in _gnss_port(pipeline, name, rec).items():
                arrays[ch] = (t, v)
    for name, rec in records.items():
        if kinds.get(name) == "bridge":
            replay_bridge_port(pipeline, name, rec.t, rec.data, rec.ends)
    pipeline.finish()
    if any(pipeline.stats[k] for k in ("drops.subscriber_exception", "drops.decoder_exception_finish")):
        raise Unsupported("a decoder or subscriber raised (see the log)")
    for ch, ts in collect.t.items():
        if ch in arrays:
            raise Unsupported(f"channel {ch} from two kinds of port")
        arrays[ch] = (np.asarray(ts, dtype=np.float64), np.asarray(collect.v[ch], dtype=np.float64))
    # ---- nothing is written before this line: an Unsupported above leaves the store untouched ----
    for ch, (t, v) in arrays.items():
        store.put_columns(ch, t, v)
    for name, decoder in pipeline.decoders.items():
        state = getattr(decoder, "state", None)
        value = state() if state is not None else None
        if value is not None:
            store.put_counters(STATE_SCOPE + name, value)
    tables = _final_steps(pipeline, store, arrays)
    store.flush()  # the wall time counts the commit, as the record-by-record replay's does
    return {
        "records": stats.records,
        "bytes": stats.bytes,
        "capture_s": max(0.0, span),
        "wall_s": time.monotonic() - wall0,
        "tables": tables,
        "counters": {**pipeline.counters(), "store": store.stats_snapshot()},
        "stats": stats,
    }
