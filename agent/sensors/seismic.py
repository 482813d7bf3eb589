"""Geophone blocks -> ground velocity (mm/s) -> band-pass -> recursive STA/LTA trigger, PGV per window.

Streaming and exact across blocks: ``SeismicProcessor.feed(t0, first_index, rate_hz, gain, counts)``
keeps the Butterworth (SOS) filter states, the STA/LTA averages and the trigger state between calls,
so feeding a recording in any block sizes gives the same samples as one call. A gap in the sample
index (or a rate change, or an index that went backwards after a reboot) closes the open event and
windows, resets filters and warm-up, and is counted.

Filters are numpy (agent.sensors.dsp: scipy's Butterworth design and sosfilt, no scipy import).
Definitions follow obspy (obspy itself is a test dependency only): the characteristic function is
obspy's ``recursive_sta_lta`` (sta = a x^2 + (1 - a) sta, a = 1/nsta; same for lta, lta starts at the
smallest float, the first sample of a segment is skipped, cf = 0 for the first ``nlta`` samples), and
events follow ``trigger_onset``: on at the first sample with cf > thr_on, off at the last sample of
that run with cf > thr_off. See docs/sensors.md.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from agent.errors import ConfigError
from agent.features.samples import Sample
from agent.sensors.dsp import SosFilter, butter_sos, first_order_sos

log = logging.getLogger(__name__)
TINY = float(np.finfo(np.float64).tiny)  # obspy's initial LTA (avoids 0/0)
MAX_EVENTS_KEPT = 1000


@dataclass(frozen=True)
class SeismicConfig:
    sensitivity_counts_per_m_s: float  # digitiser counts per m/s of ground velocity at gain 1
    band_hz: tuple[float, float] = (1.0, 20.0)  # trigger band-pass
    corners: int = 4  # Butterworth order (obspy's default)
    pgv_band_hz: tuple[float, float] | None = (0.5, 40.0)  # None: PGV from the trigger band
    pgv_window_s: float = 1.0
    sta_s: float = 0.5
    lta_s: float = 10.0
    thr_on: float = 3.5
    thr_off: float = 1.0
    min_duration_s: float = 0.0  # shorter events are counted and not reported
    warmup_s: float | None = None  # None: lta_s (obspy's cf[:nlta] = 0)
    settle_s: float = 2.0  # filter settling time after (re)start: no PGV before it
    max_time_error_s: float = 1.0  # block t0 vs. segment start + index / rate; more: new segment

    def __post_init__(self) -> None:
        problems = []
        if not self.sensitivity_counts_per_m_s > 0:
            problems.append("sensitivity_counts_per_m_s must be > 0")
        if not 0 < self.band_hz[0] < self.band_hz[1]:
            problems.append(f"band_hz {self.band_hz} must be 0 < low < high")
        if self.pgv_band_hz is not None and not 0 < self.pgv_band_hz[0] < self.pgv_band_hz[1]:
            problems.append(f"pgv_band_hz {self.pgv_band_hz} must be 0 < low < high")
        if not 0 < self.sta_s < self.lta_s:
            problems.append("need 0 < sta_s < lta_s")
        if not self.thr_on >= self.thr_off > 0:
            problems.append("need thr_on >= thr_off > 0")
        if not self.pgv_window_s > 0 or self.min_duration_s < 0 or self.settle_s < 0:
            problems.append("pgv_window_s must be > 0, min_duration_s and settle_s >= 0")
        if not self.max_time_error_s > 0:
            problems.append("max_time_error_s must be > 0")
        if not 1 <= self.corners <= 10:
            problems.append("corners must be 1..10")
        if problems:
            raise ConfigError(
                f"seismic configuration: {'; '.join(problems)}", fix="correct the seismic section"
            )


@dataclass(frozen=True)
class SeismicEvent:
    t_on: float
    t_off: float
    duration_s: float
    index_on: int  # sample index (firmware counter) of trigger-on
    index_off: int
    peak_cf: float
    pgv_mm_s: float  # peak |velocity| in the trigger band during the event


def band_sos(band_hz: tuple[float, float], rate_hz: float, corners: int) -> np.ndarray:
    """Butterworth band-pass SOS as obspy.signal.filter.bandpass designs it (high-pass if high >= Nyquist)."""
    nyq = 0.5 * rate_hz
    low, high = band_hz[0] / nyq, band_hz[1] / nyq
    if low >= 1:
        raise ConfigError(
            f"seismic band {band_hz} Hz starts above Nyquist ({nyq} Hz) of a {rate_hz} Hz stream",
            fix="lower the band or raise the geophone sample rate",
        )
    if high - 1.0 > -1e-6:
        return butter_sos(corners, low, "highpass")
    return butter_sos(corners, (low, high), "bandpass")


def recursive_sta_lta(x: np.ndarray, nsta: int, nlta: int) -> np.ndarray:
    """One-shot characteristic function, same definition as obspy.signal.trigger.recursive_sta_lta."""
    state = StaLtaState(nsta, nlta)
    return state.run(np.asarray(x, dtype=np.float64))


@dataclass
class StaLtaState:
    """Recursive STA/LTA over a stream, state carried between blocks (first-order IIR, agent.sensors.dsp)."""

    nsta: int
    nlta: int
    warmup: int = -1  # samples with cf = 0 at the start; -1: nlta (obspy)
    n: int = 0  # samples seen in this segment
    sta: float = 0.0
    lta: float = TINY
    _sta_f: SosFilter = field(init=False, repr=False)
    _lta_f: SosFilter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._sta_f = SosFilter(first_order_sos(1.0 / self.nsta))
        self._lta_f = SosFilter(first_order_sos(1.0 / self.nlta))

    def run(self, x: np.ndarray) -> np.ndarray:
        cf = np.zeros(len(x))
        sq = np.square(x)
        start = 0
        if self.n == 0 and len(x):
            start = 1  # obspy starts the recursion at the second sample
        if len(x) > start:
            cs, cl = 1.0 / self.nsta, 1.0 / self.nlta
            self._sta_f.zi[0, 0] = (1.0 - cs) * self.sta
            self._lta_f.zi[0, 0] = (1.0 - cl) * self.lta
            sta = self._sta_f.filter(sq[start:])
            lta = self._lta_f.filter(sq[start:])
            cf[start:] = sta / lta
            self.sta, self.lta = float(sta[-1]), float(lta[-1])
        warm = (self.nlta if self.warmup < 0 else self.warmup) - self.n
        if warm > 0:
            cf[:warm] = 0.0
        self.n += len(x)
        return cf


def trigger_onsets(cf: np.ndarray, thr_on: float, thr_off: float) -> list[tuple[int, int]]:
    """obspy trigger_onset semantics (no max length); an event still on at the end ends at the last sample."""
    events, i, n = [], 0, len(cf)
    while i < n:
        above = np.flatnonzero(cf[i:] > thr_on)
        if not len(above):
            break
        on = i + int(above[0])
        below = np.flatnonzero(cf[on:] <= thr_off)
        off = n - 1 if not len(below) else on + int(below[0]) - 1
        events.append((on, off))
        i = off + 1
    return events


@dataclass
class _Segment:
    """Everything that restarts at a gap."""

    rate_hz: float
    index_origin: int  # sample index and time of the segment's first sample: sample times derive from it
    t_origin: float
    next_index: int
    band: SosFilter
    pgv: SosFilter | None
    stalta: StaLtaState
    n: int = 0
    on_index: int | None = None
    on_t: float = 0.0
    peak_cf: float = 0.0
    event_pgv: float = 0.0
    reported_on: bool = False
    win_start: float | None = None
    win_max: float = -1.0

    def time(self, index: int | np.ndarray) -> float | np.ndarray:
        """UTC time of a sample index: the same number whatever the block boundaries were."""
        return self.t_origin + (index - self.index_origin) / self.rate_hz


@dataclass
class SeismicProcessor:
    """Feed geophone blocks; get ``seismic.pgv_mm_s`` (per window) and ``seismic.trigger`` samples."""

    cfg: SeismicConfig
    counters: Counter[str] = field(default_factory=Counter)
    events: list[SeismicEvent] = field(default_factory=list)
    _seg: _Segment | None = None

    # ---- public ----------------------------------------------------------------------------------
    def feed(
        self, t0: float, first_index: int, rate_hz: float, gain: float, counts: np.ndarray
    ) -> list[Sample]:
        x = np.asarray(counts, dtype=np.float64).ravel()
        self.counters["blocks"] += 1
        if not (
            rate_hz > 0 and math.isfinite(rate_hz) and gain > 0 and math.isfinite(gain) and math.isfinite(t0)
        ):
            self.counters["bad_blocks"] += 1
            self.counters["dropped_samples"] += len(x)
            if self.counters["bad_blocks"] in (1, 10) or self.counters["bad_blocks"] % 100 == 0:
                log.warning("seismic block dropped: rate %r Hz, gain %r, t0 %r", rate_hz, gain, t0)
            return []
        if not len(x):
            return []
        if not np.all(np.isfinite(x)):
            self.counters["bad_blocks"] += 1
            self.counters["dropped_samples"] += len(x)
            return []
        out: list[Sample] = []
        seg = self._seg
        if seg is not None and abs(seg.t_origin + (first_index - seg.index_origin) / seg.rate_hz - t0) > (
            self.cfg.max_time_error_s
        ):
            self.counters["time_jumps"] += 1
            self.counters["gaps"] += 1
            log.info("seismic block time %.3f disagrees with its sample index: new segment", t0)
            out += self._close_segment(seg)
            seg = None
        if seg is not None and (rate_hz != seg.rate_hz or first_index != seg.next_index):
            ahead = first_index - seg.next_index
            if rate_hz == seg.rate_hz and -len(x) < ahead < 0:  # overlap: drop what we already have
                self.counters["overlap_samples"] += -ahead
                x = x[-ahead:]
                first_index = seg.next_index
            elif rate_hz == seg.rate_hz and ahead <= -len(x) and ahead > -10 * len(x):
                self.counters["duplicate_blocks"] += 1
                self.counters["dropped_samples"] += len(x)
                return []
            else:
                self.counters["gaps"] += 1
                if ahead > 0 and rate_hz == seg.rate_hz:
                    self.counters["missing_samples"] += ahead
                log.info(
                    "seismic gap: index %d, expected %d (rate %s Hz)", first_index, seg.next_index, rate_hz
                )
                out += self._close_segment(seg)
                seg = None
        if seg is None:
            seg = self._new_segment(rate_hz, first_index, t0)
            self._seg = seg
        v = x / (self.cfg.sensitivity_counts_per_m_s * gain) * 1000.0  # mm/s
        out += self._process(seg, first_index, v)
        self.counters["samples"] += len(v)
        return out

    def finish(self) -> list[Sample]:
        """End of stream: close an open event (off at the last sample) and the last PGV window."""
        out: list[Sample] = []
        if self._seg is not None:
            out = self._close_segment(self._seg)
            self._seg = None
        return out

    # ---- internals -------------------------------------------------------------------------------
    def _new_segment(self, rate_hz: float, first_index: int, t0: float) -> _Segment:
        cfg = self.cfg
        sos = band_sos(cfg.band_hz, rate_hz, cfg.corners)
        pgv_sos = band_sos(cfg.pgv_band_hz, rate_hz, cfg.corners) if cfg.pgv_band_hz is not None else None
        nsta, nlta = int(cfg.sta_s * rate_hz), int(cfg.lta_s * rate_hz)
        if nsta < 1:
            raise ConfigError(
                f"seismic sta_s {cfg.sta_s} s is below one sample at {rate_hz} Hz", fix="raise sta_s"
            )
        warm = nlta if cfg.warmup_s is None else max(nlta, int(cfg.warmup_s * rate_hz))
        return _Segment(
            rate_hz=rate_hz,
            index_origin=first_index,
            t_origin=t0,
            next_index=first_index,
            band=SosFilter(sos),
            pgv=None if pgv_sos is None else SosFilter(pgv_sos),
            stalta=StaLtaState(nsta, nlta, warm),
        )

    def _process(self, seg: _Segment, first_index: int, v: np.ndarray) -> list[Sample]:
        y = seg.band.filter(v)
        pv = seg.pgv.filter(v) if seg.pgv is not None else y
        cf = seg.stalta.run(y)
        n0 = seg.n
        out = self._triggers(seg, first_index, cf, np.abs(y))
        out += self._pgv(seg, first_index, n0, np.abs(pv))
        seg.n += len(v)
        seg.next_index = first_index + len(v)
        return out

    def _triggers(self, seg: _Segment, first: int, cf: np.ndarray, ay: np.ndarray) -> list[Sample]:
        cfg, out = self.cfg, []
        i, n = 0, len(cf)
        while i < n:
            if seg.on_index is None:
                above = np.flatnonzero(cf[i:] > cfg.thr_on)
                if not len(above):
                    break
                i += int(above[0])
                seg.on_index, seg.on_t = first + i, float(seg.time(first + i))
                seg.peak_cf, seg.event_pgv, seg.reported_on = 0.0, 0.0, False
            below = np.flatnonzero(cf[i:] <= cfg.thr_off)
            end = n if not len(below) else i + int(below[0])
            if end > i:
                seg.peak_cf = max(seg.peak_cf, float(cf[i:end].max()))
                seg.event_pgv = max(seg.event_pgv, float(ay[i:end].max()))
            last_index = first + end - 1
            last_t = float(seg.time(last_index))
            if not seg.reported_on and last_t - seg.on_t >= cfg.min_duration_s:
                seg.reported_on = True
                out.append(Sample(seg.on_t, "seismic.trigger", 1.0))
            if end == n:
                break  # still on at the end of this block
            out += self._end_event(seg, last_index, last_t)
            i = end
        return out

    def _end_event(self, seg: _Segment, off_index: int, off_t: float) -> list[Sample]:
        if seg.on_index is None:
            return []
        on_index, on_t = seg.on_index, seg.on_t
        seg.on_index = None
        duration = off_t - on_t
        if duration < self.cfg.min_duration_s or not seg.reported_on:
            self.counters["short_events"] += 1
            return []
        self.counters["events"] += 1
        if len(self.events) < MAX_EVENTS_KEPT:
            self.events.append(
                SeismicEvent(on_t, off_t, duration, on_index, off_index, seg.peak_cf, seg.event_pgv)
            )
        return [Sample(off_t, "seismic.trigger", 0.0)]

    def _pgv(self, seg: _Segment, first: int, n0: int, av: np.ndarray) -> list[Sample]:
        cfg = self.cfg
        out: list[Sample] = []
        settle = math.ceil(cfg.settle_s * seg.rate_hz)
        skip = max(0, settle - n0)
        if skip >= len(av):
            return out
        t = np.asarray(seg.time(np.arange(first + skip, first + len(av))))
        a = av[skip:]
        w = np.floor(t / cfg.pgv_window_s + 1e-9)
        first_of = np.concatenate(([0], np.flatnonzero(np.diff(w)) + 1))  # where each window's part starts
        peaks = np.maximum.reduceat(a, first_of).tolist()
        for ws, peak in zip((w[first_of] * cfg.pgv_window_s).tolist(), peaks, strict=True):
            if seg.win_start is not None and abs(ws - seg.win_start) > 1e-9:
                out += self._close_window(seg)
            if seg.win_start is None:
                seg.win_start = ws
            seg.win_max = max(seg.win_max, peak)
        return out

    def _close_window(self, seg: _Segment) -> list[Sample]:
        if seg.win_start is None:
            return []
        s = Sample(seg.win_start, "seismic.pgv_mm_s", seg.win_max)
        seg.win_start, seg.win_max = None, -1.0
        self.counters["pgv_windows"] += 1
        return [s]

    def _close_segment(self, seg: _Segment) -> list[Sample]:
        out: list[Sample] = []
        if seg.on_index is not None:
            last_t = float(seg.time(seg.next_index - 1))
            if not seg.reported_on and last_t - seg.on_t >= self.cfg.min_duration_s:
                seg.reported_on = True
                out.append(Sample(seg.on_t, "seismic.trigger", 1.0))
            out += self._end_event(seg, seg.next_index - 1, last_t)
        out += self._close_window(seg)
        return out
