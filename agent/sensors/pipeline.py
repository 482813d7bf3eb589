"""The ingestion pipeline: ports -> parsers -> processors -> store, with subscribers and counters.

Per enabled port, one reader thread (:class:`agent.sensors.serialport.SerialPortReader`) hands received
bytes to :meth:`Pipeline.ingest`, which runs the port's decoder (GNSS: framer + epoch gate; bridge:
frame decoder + device state + seismic processor), optionally records the raw bytes for replay, then
hands the samples to the store writer and, at once, to every subscriber: the warning engine reacts to
``wire.state`` the moment it is decoded, not at the next step. ``agent replay`` calls the same
``ingest`` with recorded bytes, so live and replay share every line after the bytes.
Every stage counts what it passes on and what it drops, with the reason (:meth:`Pipeline.counters`).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from agent.errors import LewsError
from agent.features.aggregate import DAY_S, HOUR_S, Expectations, StepTable, step_start
from agent.features.samples import Sample
from agent.features.store import Store
from agent.sensors.clock import ClockDiscipline
from agent.sensors.decoders import PortDecoder, make_decoder
from agent.sensors.device_clock import DeviceClockSync
from agent.sensors.settings import SensorsConfig

log = logging.getLogger(__name__)

Subscriber = Callable[[str, Sequence[Sample]], None]  # (port name, samples just decoded)
RawSink = Callable[[str, float, bytes], None]  # (port name, t, bytes) for capture
# Port kind <-> capture file format (agent/sensors/capture.py); a GNSS port carries UBX and NMEA.
CAPTURE_FORMAT: dict[str, str] = {"gnss": "ubx", "bridge": "bridge"}
KIND_OF_FORMAT: dict[str, str] = {"ubx": "gnss", "nmea": "gnss", "bridge": "bridge"}
STATE_SCOPE = "decoder_state:"  # store counters scope of a port's resumable decoder state


def flatten_counts(tree: Any, prefix: str = "") -> dict[str, int]:
    """Nested counters -> {"a.b.c": int}; numbers and booleans only (text and None are left out)."""
    out: dict[str, int] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten_counts(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, bool | int) or (isinstance(tree, float) and math.isfinite(tree)):
        out[prefix] = int(tree)
    return out


class QueueSubscriber:
    """A bounded queue of (port, sample) for a consumer thread (the warning engine); drops are counted."""

    def __init__(self, maxsize: int = 10_000, channels: Sequence[str] | None = None) -> None:
        self.queue: queue.Queue[tuple[str, Sample]] = queue.Queue(maxsize)
        self.channels = frozenset(channels) if channels is not None else None
        self.dropped = 0

    def __call__(self, port: str, samples: Sequence[Sample]) -> None:
        for s in samples:
            if self.channels is None or s.channel in self.channels:
                try:
                    self.queue.put_nowait((port, s))
                except queue.Full:
                    self.dropped += 1


def expectations(cfg: SensorsConfig) -> Expectations:
    """What a complete step contains, from the sensors' configured sample periods."""
    return Expectations(
        gnss_period_s=1.0 / cfg.gnss.epoch_rate_hz,
        seismic_period_s=cfg.seismic.pgv_window_s,
        heartbeat_period_s=cfg.device.heartbeat_period_s,
        rain_max_gap_s=cfg.rain.max_gap_s,
    )


class Pipeline:
    """Everything between the serial ports and the store. ``start()`` opens the ports; ``stop()`` ends."""

    def __init__(
        self,
        cfg: SensorsConfig,
        store: Store | None,
        *,
        clock: Callable[[], float] = time.time,
        raw_sink: RawSink | None = None,
        steps_every_s: float = 60.0,
        daily_every_s: float = 900.0,
        hourly: bool = True,
        store_wait_s: float | None = 1.0,
        discipline: ClockDiscipline | None = None,
        set_device_clock: bool | None = None,
    ) -> None:
        """``discipline``: GNSS-disciplined time (clock.py; default: on ``clock``); ``set_device_clock``:
        SET_CLOCK to bridge devices (None: only on the real system clock, not a simulated one)."""
        self.cfg = cfg
        self.store_wait_s = store_wait_s  # how long a port thread may wait for a slow (healthy) store
        self.store = store
        self.clock = clock
        self.time = discipline or ClockDiscipline(clock, enabled=cfg.gnss.discipline_clock)
        self.device_clock = DeviceClockSync(self.time)  # SET_CLOCK to the microcontroller
        self._writers: dict[str, Callable[[bytes], bool]] = {}  # live ports (none in a replay)
        auto = self.time.enabled and self.time.raw is time.time
        self._set_device_clock = auto if set_device_clock is None else set_device_clock
        self.raw_sink = raw_sink
        self.expect = expectations(cfg)
        self.steps_every_s = steps_every_s
        self.daily_every_s = daily_every_s
        self.hourly = hourly
        self.decoders: dict[str, PortDecoder] = {p.name: make_decoder(p, cfg) for p in cfg.enabled_ports()}
        self.subscribers: list[Subscriber] = []
        self.readers: list[Any] = []
        self.stats: Counter[str] = Counter()  # samples.<channel>, bytes.<port>, drops.<reason>
        self.t_min = math.inf  # sample time range seen (for steps and the replay summary)
        self.t_max = -math.inf
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stepper: threading.Thread | None = None
        self._capture: Any = None  # agent.sensors.capture.CaptureWriter while capturing
        self._saved_state: dict[str, dict[str, int]] = {}
        self._restore_states()
        self._dirty: dict[int, float] = {DAY_S: math.inf, HOUR_S: math.inf}  # see refresh_steps
        self._open_day_done = -math.inf  # monotonic time the open day was last computed
        # A sample must lie in [read time - lag, read time + lead]; else it is dropped and counted.
        self.max_sample_lag_s, self.max_sample_lead_s = cfg.max_sample_lag_s, cfg.max_sample_lead_s
        self._last_read: dict[str, float] = {}
        self._time_warned = False

    def subscribe(self, fn: Subscriber) -> None:
        self.subscribers.append(fn)

    # ---- the shared path after the bytes ---------------------------------------------------------
    def ingest(self, port: str, t: float, data: bytes) -> list[Sample]:
        """Decode bytes of ``port`` received at system time ``t``, pass the samples on; never raises. A
        GNSS port's valid time disciplines the clock: every port's samples get the corrected stamp."""
        t_sys, t = t, self.time.correct(t)
        decoder = self.decoders.get(port)
        if decoder is None:
            self._count("drops.unknown_port_bytes", len(data))
            return []
        self._count(f"bytes.{port}", len(data))
        if self.raw_sink is not None:
            try:
                self.raw_sink(port, t_sys, data)  # as received: a replay disciplines it again
            except (OSError, LewsError) as exc:
                self._count("drops.capture_write")
                log.error("capture of %s failed: %s", port, exc)
        try:
            samples = decoder.feed(t, data)
        except Exception as exc:  # a decoder bug must not kill the port thread; the chunk is counted
            self._count("drops.decoder_exception_bytes", len(data))
            log.exception("%s decoder raised %s on %d bytes (dropped)", port, type(exc).__name__, len(data))
            self._count(f"done.{port}", len(data))
            return []
        t, stamp = self.time.restamp(decoder, t_sys)
        if samples:
            self._count(f"clock.stamped_{stamp}", len(samples))
        samples = self._plausible(samples, t)
        self._last_read[port] = t
        self.emit(port, samples)
        self._persist_state(port, decoder)
        device, write = getattr(decoder, "device", None), self._writers.get(port)
        if device is not None and write is not None:
            self.device_clock.after_chunk(port, device, write, self.cfg.device.max_skew_s)
        self._count(f"done.{port}", len(data))  # bytes whose samples reached the subscribers and store queue
        return samples

    def _persist_state(self, port: str, decoder: PortDecoder) -> None:
        """Queue the decoder's resumable state behind the samples it produced: the store commits its
        queue in order, so after a crash the saved state always matches the samples kept (no rain
        counted twice, none lost between the last frame before a restart and the first after)."""
        state_fn = getattr(decoder, "state", None)
        if self.store is None or state_fn is None:
            return
        state = state_fn()
        if state is not None and state != self._saved_state.get(port):
            self.store.put_counters(STATE_SCOPE + port, state)
            self._saved_state[port] = state

    def _restore_states(self) -> None:
        if self.store is None:
            return
        saved = self.store.counters()
        for port, decoder in self.decoders.items():
            values = saved.get(STATE_SCOPE + port)
            restore = getattr(decoder, "restore", None)
            if values and restore is not None:
                restore(values)
                self._saved_state[port] = dict(values)
                log.info("%s: resumed decoder state %s", port, values)

    def _plausible(self, samples: list[Sample], t_read: float) -> list[Sample]:
        """Drop (and count) samples whose time is implausibly far from the read time.

        A receiver with a bad date (week rollover, unset clock) must not put samples decades away:
        they would be lost to retention or blow up the step computation.
        """
        lo, hi = t_read - self.max_sample_lag_s, t_read + self.max_sample_lead_s
        good = [s for s in samples if lo <= s.t <= hi]
        if len(good) != len(samples):
            self._count("drops.implausible_time", len(samples) - len(good))
            if not self._time_warned:
                log.warning("samples %.0f s from their read time dropped (counted)", samples[0].t - t_read)
                self._time_warned = True
        return good

    def emit(self, port: str, samples: Sequence[Sample]) -> None:
        """Pass samples on: subscribers first (the wire alarm waits for nothing), then the store."""
        if not samples:
            return
        self.note_samples(
            Counter(s.channel for s in samples), min(s.t for s in samples), max(s.t for s in samples)
        )
        for fn in self.subscribers:
            try:
                fn(port, samples)
            except Exception:  # one faulty consumer must not stop the others or the port
                self._count("drops.subscriber_exception")
                log.exception("subscriber %r failed on %d samples", fn, len(samples))
        if self.store is not None:
            self.store.put(samples, wait_s=self.store_wait_s)

    def note_samples(self, per_channel: Mapping[str, int], first: float, last: float) -> None:
        """Count samples passed on (``emit``, or the columnar replay, which writes its own)."""
        with self._lock:
            self.stats.update({f"samples.{ch}": n for ch, n in per_channel.items()})
            self.t_min, self.t_max = min(self.t_min, first), max(self.t_max, last)
            for step_s in self._dirty:
                self._dirty[step_s] = min(self._dirty[step_s], first)

    def finish(self) -> None:
        """Flush what decoders still hold (end of a capture, or a clean stop)."""
        for port, decoder in self.decoders.items():
            try:
                last = self._last_read.get(port)
                rest = decoder.finish()
                self.emit(port, self._plausible(rest, last) if last is not None else rest)
            except Exception:
                self._count("drops.decoder_exception_finish")
                log.exception("%s decoder failed to finish", port)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # ---- steps --------------------------------------------------------------------------------------
    def refresh_steps(
        self, start: float | None = None, end: float | None = None, *, final: bool = False
    ) -> list[StepTable]:
        """Commit queued samples and recompute the steps that new samples touched, up to ``end``.

        Each step length keeps the earliest sample time received since its last computation (its
        "dirty" mark): only steps from there on can have changed. Hourly steps are recomputed from
        min(dirty, ``start``). Daily steps from their dirty mark only (a day's median reads the whole
        day of raw samples), and the still-open day at most every ``daily_every_s`` unless ``final``.
        ``end`` defaults to the newest sample. Returns the tables written.
        """
        if self.store is None:
            return []
        with self._lock:
            hi = self.t_max if end is None else end
            dirty = dict(self._dirty)
            for step_s in dirty:
                self._dirty[step_s] = math.inf
        lows = {HOUR_S: min(dirty[HOUR_S], math.inf if start is None else start), DAY_S: dirty[DAY_S]}
        if final and start is not None:
            lows[DAY_S] = min(lows[DAY_S], start)
        recent = time.monotonic() - self._open_day_done < self.daily_every_s
        if not final and recent and step_start(lows[DAY_S], DAY_S) >= step_start(hi, DAY_S):
            with self._lock:  # only the open day changed and it was computed recently: later
                self._dirty[DAY_S] = min(self._dirty[DAY_S], dirty[DAY_S])
            lows[DAY_S] = math.inf
        self.store.flush()
        tables = []
        for step_s in (DAY_S, HOUR_S) if self.hourly else (DAY_S,):
            lo = lows[step_s]
            if math.isfinite(lo) and math.isfinite(hi) and lo <= hi:
                tables.append(self.store.refresh_steps(step_s, lo, hi + 1e-6, self.expect))
                if step_s == DAY_S:
                    self._open_day_done = time.monotonic()
        self.store.flush()
        return tables

    def _step_loop(self) -> None:
        while not self._stop.wait(self.steps_every_s):
            try:
                self.refresh_steps()
                self.save_counters()
            except LewsError as exc:
                self._count("drops.step_refresh_failed")
                log.error("step refresh failed: %s", exc)

    # ---- live ports --------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        from agent.sensors.serialport import SerialPortReader

        if self.cfg.capture.enabled and self.raw_sink is None:
            self._start_capture()
        for port in self.cfg.enabled_ports():
            reader = SerialPortReader(
                port.name,
                port.path,
                self._on_bytes_for(port.name),
                baudrate=port.baud,
                backoff_s=self.cfg.reopen_backoff_s,
            )
            self.readers.append(reader.start())
            if self._set_device_clock:
                self._writers[port.name] = reader.write
        self._stepper = threading.Thread(target=self._step_loop, name="pipeline-steps", daemon=True)
        self._stepper.start()
        log.info("pipeline started: %d ports", len(self.readers))
        return self

    def _start_capture(self) -> None:
        from agent.sensors.capture import CaptureWriter

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.clock()))
        writer = CaptureWriter(self.cfg.capture.dir / stamp)
        sinks = {
            p.name: writer.add_port(p.name, CAPTURE_FORMAT[p.kind], device=p.path, baudrate=p.baud)
            for p in self.cfg.enabled_ports()
        }
        self._capture = writer
        self.raw_sink = lambda port, t, data: sinks[port](t, data)
        log.info("capturing raw bytes to %s", writer.directory)

    def _on_bytes_for(self, port: str) -> Callable[[float, bytes], None]:
        def on_bytes(_t_port: float, data: bytes) -> None:
            self.ingest(port, self.time.raw(), data)  # one clock for samples and capture alike

        return on_bytes

    def stop(self) -> None:
        """Stop the ports, flush the decoders, refresh the steps and commit everything."""
        self._stop.set()
        for reader in self.readers:
            reader.stop()
        if self._stepper is not None:
            self._stepper.join(10)
        self.finish()
        if self._capture is not None:
            self._capture.close()
        if self.store is not None:
            try:
                self.save_counters()
                self.refresh_steps(final=True)
            except LewsError as exc:
                log.error("final step refresh failed: %s", exc)

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def save_counters(self) -> None:
        """Persist the current counters in the store's counters table (scope = stage.port)."""
        if self.store is None:
            return
        for scope, tree in self.counters().items():
            if scope in ("decoders", "ports"):
                for name, sub in tree.items():
                    self.store.put_counters(f"{scope}.{name}", flatten_counts(sub))
            else:
                self.store.put_counters(scope, flatten_counts(tree))

    def stats_snapshot(self) -> dict[str, int]:
        """A copy of the pipeline's own counters (bytes, done bytes, drops per port)."""
        with self._lock:
            return dict(self.stats)

    def counters(self) -> dict[str, Any]:
        """Everything counted, per stage: ports, decoders, pipeline, store."""
        with self._lock:
            pipeline = dict(self.stats)
        out: dict[str, Any] = {
            "pipeline": pipeline,
            "decoders": {name: _snapshot(d.counters) for name, d in self.decoders.items()},
            "ports": {r.name: asdict(r.counters) for r in self.readers},
            "device_clock": dict(self.device_clock.counters),
        }
        if self.store is not None:
            out["store"] = self.store.stats_snapshot()
        return out


def _snapshot(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Read another thread's counters; a dict that grew during the copy is read again."""
    for _ in range(5):
        try:
            return read()
        except RuntimeError:  # "dictionary changed size during iteration"
            time.sleep(0.001)
    return {"unreadable": 1}
