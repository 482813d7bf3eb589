"""A whole bridge port replayed as arrays: what ``Pipeline.ingest`` with a
:class:`agent.sensors.decoders.BridgeDecoder` gives read by read, for a capture of any length.

Frames come from :mod:`agent.sensors.bridge_frames_columnar`. RAIN, WIRE, HEARTBEAT and the rest go
through ``BridgeDevice.handle`` one by one (a few hundred an hour). The device's SEISMIC rules
(``BridgeDevice._seismic``: restart on a new boot or rate, gaps counted, the block clock anchored on
the receive time and re-anchored when it drifts past ``max_skew_s``) run column-wise, the anchors found
in order. The seismic processor gets runs of blocks it would take without a decision of its own (the
next index, same rate and gain, a time within ``max_time_error_s`` of its segment's clock), each run
as one call; any other block goes alone, as live. The processor is exact across blocks, so a run
gives its blocks' samples (the band-pass to rounding). Each sample passes the pipeline's read-time
check at its read: a block fed alone at its own, a run's at every read of the run (else Unsupported).
"""

from __future__ import annotations

import numpy as np

from agent.errors import Unsupported
from agent.features.samples import Sample
from agent.sensors.bridge_device import FULL_SCALE, BridgeDevice
from agent.sensors.bridge_frames_columnar import BridgeFrames, deframe
from agent.sensors.decoders import BridgeDecoder
from agent.sensors.pipeline import Pipeline
from firmware_bridge.messages import SampleFormat

MAX_RUN_S = 60.0  # a run spans at most this much receive time (and half the read-time limits)
MAX_REANCHORS = 1000


def _seismic_clock(dev: BridgeDevice, f: BridgeFrames, t: np.ndarray) -> np.ndarray:
    """t0 of each SEISMIC block as ``BridgeDevice._seismic`` computes it; its counters added."""
    s = f.seis
    boot, first = f.boot[f.seismic], s["first_index"].astype(np.int64)
    rate, n = s["rate_hz"].astype(np.float64), s["n"].astype(np.int64)
    m = len(s)
    restart = np.ones(m, dtype=bool)
    restart[1:] = (boot[1:] != boot[:-1]) | (rate[1:] != rate[:-1])
    ahead = np.zeros(m, dtype=np.int64)
    ahead[1:] = first[1:] - (first[:-1] + n[:-1])
    ahead[restart] = 0
    if np.any(ahead < 0):
        raise Unsupported("overlapping SEISMIC blocks")
    idx = np.arange(m)
    anchor = restart.copy()
    own_anchor_t = t - n / rate  # a (re)anchored block: anchor_t = t - len(counts) / rate
    reanchors = 0
    for _ in range(MAX_REANCHORS):
        a = np.maximum.accumulate(np.where(anchor, idx, 0))
        t0 = own_anchor_t[a] + (first - first[a]) / rate
        bad = np.abs(t - (t0 + n / rate)) > dev.max_skew_s
        late = np.flatnonzero(bad & ~anchor)
        if not len(late):
            break
        anchor[late[0]] = True  # the first drift past the limit re-anchors; later blocks follow it
        reanchors += 1
    else:
        raise Unsupported("more SEISMIC re-anchors than the columnar replay follows")
    reanchors += int(np.count_nonzero(bad & anchor & restart))
    t0 = np.where(anchor, own_anchor_t, t0)
    c = dev.counters
    c.seismic_blocks += m
    c.seismic_gaps += int(np.count_nonzero(ahead > 0))
    c.seismic_missing_samples += int(ahead.sum())
    c.seismic_reanchors += reanchors
    for fmt, counts in f.seis_groups:
        full = FULL_SCALE[SampleFormat(fmt)]
        c.seismic_clipped_samples += int(np.count_nonzero((counts >= full) | (counts <= -full - 1)))
    return t0


class _Runs:
    """Feeds the processor and passes the samples on with the pipeline's bookkeeping."""

    def __init__(self, pipeline: Pipeline, port: str, decoder: BridgeDecoder, rec_t: np.ndarray) -> None:
        self.pipeline, self.port, self.proc, self.rec_t = pipeline, port, decoder.seismic, rec_t
        self.max_run_s = min(MAX_RUN_S, pipeline.max_sample_lag_s / 2, pipeline.max_sample_lead_s / 2)
        self.run: list[int] = []

    def pass_on(self, samples: list[Sample], t_first: float, t_last: float) -> None:
        """Samples that, live, were emitted by reads in [t_first, t_last]: the read-time check as live
        for one read; for a run, Unsupported unless every sample passes it at every read."""
        if not samples:
            return
        p = self.pipeline
        p.stats["clock.stamped_system"] += len(samples)
        if t_first == t_last:
            samples = p._plausible(samples, t_first)
        elif (
            min(s.t for s in samples) < t_last - p.max_sample_lag_s
            or max(s.t for s in samples) > t_first + p.max_sample_lead_s
        ):
            raise Unsupported("seismic samples the read-time check would drop at some read of their run")
        p.emit(self.port, samples)

    def feed(self, f: BridgeFrames, t0: np.ndarray, block_rec: np.ndarray) -> None:
        s, proc = f.seis, self.proc
        rate = s["rate_hz"].astype(np.float64).tolist()
        gain, first = s["gain"].tolist(), s["first_index"].tolist()
        t0l, reads = t0.tolist(), self.rec_t[block_rec].tolist()
        max_err = proc.cfg.max_time_error_s
        nxt = 0
        for i in range(len(s)):
            seg, run = proc._seg, self.run
            if run:
                j0 = run[0]
                ok = gain[i] == gain[j0] and reads[i] - reads[j0] <= self.max_run_s and first[i] == nxt
            else:
                ok = seg is not None and first[i] == seg.next_index
            if ok and seg is not None:
                ok = rate[i] == seg.rate_hz and (
                    abs(seg.t_origin + (first[i] - seg.index_origin) / seg.rate_hz - t0l[i]) <= max_err
                )
            if ok:
                run.append(i)
                nxt = first[i] + len(f.seis_counts[i])
                continue
            self.flush(f, t0l, reads)
            out = proc.feed(t0l[i], first[i], rate[i], gain[i], f.seis_counts[i])
            self.pass_on(out, reads[i], reads[i])
        self.flush(f, t0l, reads)

    def flush(self, f: BridgeFrames, t0: list[float], reads: list[float]) -> None:
        run, self.run = self.run, []
        if not run:
            return
        i = run[0]
        s = f.seis
        counts = np.concatenate([f.seis_counts[j] for j in run])
        out = self.proc.feed(
            t0[i], int(s["first_index"][i]), float(s["rate_hz"][i]), int(s["gain"][i]), counts
        )
        self.proc.counters["blocks"] += len(run) - 1  # one call stood for every block
        self.pass_on(out, reads[i], reads[run[-1]])


def replay_bridge_port(
    pipeline: Pipeline, port: str, rec_t: np.ndarray, data: bytes, rec_end: np.ndarray
) -> None:
    """Replay one bridge port into ``pipeline`` (its samples through ``emit``, counters as live)."""
    decoder = BridgeDecoder(pipeline.cfg, port)
    pipeline.decoders[port] = decoder
    f = deframe(data, rec_end)
    decoder.frames.counters = f.counters
    dev = decoder.device
    t_frame = rec_t[f.record]
    t0 = _seismic_clock(dev, f, t_frame[f.seismic])
    # the other frames, one by one, in order; the device sees the boot id of the frame before each
    prev_boot = np.concatenate(([-1], f.boot[:-1]))
    for k in np.flatnonzero(~f.seismic).tolist():
        frame = f.frames[k]
        if frame is None:
            raise Unsupported("a non-SEISMIC frame without its message")
        dev.boot_id = None if prev_boot[k] < 0 else int(prev_boot[k])
        out = dev.handle(frame, float(t_frame[k]))
        if out.seismic is not None:
            raise Unsupported("a SEISMIC frame on the per-frame path")
        runs_out = list(out.samples)
        if runs_out:
            pipeline.stats["clock.stamped_system"] += len(runs_out)
            pipeline.emit(port, pipeline._plausible(runs_out, float(t_frame[k])))
    dev.counters.frames = len(f.boot)
    dev.counters.reboots = f.counters.reboots
    dev.boot_id = int(f.boot[-1]) if len(f.boot) else None
    _Runs(pipeline, port, decoder, rec_t).feed(f, t0, f.record[f.seismic])
    total = int(rec_end[-1]) if len(rec_end) else 0
    pipeline.stats.update({f"bytes.{port}": total, f"done.{port}": total})
    if len(rec_t):
        pipeline._last_read[port] = float(rec_t[-1])
