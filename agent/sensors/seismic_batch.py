"""A bridge decoder for replay that feeds the seismic processor runs of blocks instead of one block
at a time: the same frames, device state and samples as :class:`agent.sensors.decoders.BridgeDecoder`,
at a fraction of the cost (a 100 Hz geophone in blocks of 50 is 7,200 processor calls an hour).

A block joins the pending run only when the processor would take it without any decision of its own:
same rate and gain, the next sample index, a finite time that agrees with the segment's clock within
``max_time_error_s``, finite counts. Any other block first flushes the run, then goes to the processor
alone, exactly as live. The processor is exact across block boundaries (agent/sensors/seismic.py), so
a run gives the samples its blocks give one by one (filter values to rounding: tests compare them).

The samples of a flushed run were emitted, live, by the reads of its blocks: the caller takes them with
:meth:`take_flushed` and passes them on without the per-read time check, which every one of them
passes at every read of the run (else ``refused`` says why, and the caller gives up: a decoder must
not raise inside ``Pipeline.ingest``, which counts that as a decoder bug).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agent.features.samples import Sample
from agent.sensors.bridge_device import SeismicBlock
from agent.sensors.decoders import BridgeDecoder
from agent.sensors.settings import SensorsConfig

MAX_RUN_S = 60.0  # a run spans at most this much receive time (and half the read-time limits)


@dataclass
class _Run:
    t0: float
    first_index: int
    rate_hz: float
    gain: float
    next_index: int
    t_first_read: float
    t_last_read: float
    blocks: list[np.ndarray] = field(default_factory=list)


class BatchedBridgeDecoder(BridgeDecoder):
    def __init__(self, cfg: SensorsConfig, name: str) -> None:
        super().__init__(cfg, name)
        self.max_lag_s, self.max_lead_s = cfg.max_sample_lag_s, cfg.max_sample_lead_s
        self.max_run_s = min(MAX_RUN_S, self.max_lag_s / 2, self.max_lead_s / 2)
        self._run: _Run | None = None
        self._flushed: list[Sample] = []
        self.refused: str | None = None  # set instead of raising: the pipeline counts decoder errors

    def feed(self, t: float, data: bytes) -> list[Sample]:
        out: list[Sample] = []
        for frame in self.frames.decode(data):
            res = self.device.handle(frame, t)
            out.extend(res.samples)
            if res.seismic is not None and not self._extend(res.seismic, t):
                self.flush()
                b = res.seismic
                out.extend(self.seismic.feed(b.t0, b.first_index, b.rate_hz, b.gain, b.counts))
        return out

    def _extend(self, b: SeismicBlock, t: float) -> bool:
        """Add ``b`` (read at ``t``) to the pending run when the processor would take it as is."""
        seg = self.seismic._seg
        run = self._run
        if seg is None or not (math.isfinite(b.t0) and b.gain > 0 and len(b.counts)):
            return False
        nxt = run.next_index if run is not None else seg.next_index
        expected_t0 = seg.t_origin + (b.first_index - seg.index_origin) / seg.rate_hz
        if (
            b.rate_hz != seg.rate_hz
            or b.first_index != nxt
            or abs(expected_t0 - b.t0) > self.seismic.cfg.max_time_error_s
            or (run is not None and (b.gain != run.gain or t - run.t_first_read > self.max_run_s))
            or not np.all(np.isfinite(b.counts))
        ):
            return False
        if run is None:
            run = self._run = _Run(b.t0, b.first_index, b.rate_hz, b.gain, b.first_index, t, t)
        run.blocks.append(b.counts)
        run.next_index = b.first_index + len(b.counts)
        run.t_last_read = t
        return True

    def flush(self) -> None:
        """Feed the pending run to the processor; its samples wait in :meth:`take_flushed`."""
        run, self._run = self._run, None
        if run is None:
            return
        counts = np.concatenate(run.blocks)
        samples = self.seismic.feed(run.t0, run.first_index, run.rate_hz, run.gain, counts)
        self.seismic.counters["blocks"] += len(run.blocks) - 1  # one call stood for every block
        if samples and (
            min(s.t for s in samples) < run.t_last_read - self.max_lag_s
            or max(s.t for s in samples) > run.t_first_read + self.max_lead_s
        ):  # each must pass the pipeline's read-time check at every read of the run, as it did live
            self.refused = "seismic samples the read-time check would drop at some read of their run"
        self._flushed.extend(samples)

    def take_flushed(self) -> list[Sample]:
        out, self._flushed = self._flushed, []
        return out

    def finish(self) -> list[Sample]:
        if self._run is not None:  # the caller flushes first: those samples belong to earlier reads
            self.refused = "finish with a pending seismic run"
            return []
        return super().finish()
