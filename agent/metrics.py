"""Prometheus metrics of the gateway, built from the daemon's status dict (``Daemon.status()``).

The daemon's components already count everything (per stage, per reason); the status dict carries those
counts. ``families_from_status`` turns one status dict into Prometheus metric families (a pure function:
the mapping from status keys to metric names is data, below). ``StatusCollector`` holds the latest status
(``update_from_status``) and yields those families on each scrape, so counters are exposed as the
cumulative counts the components keep (they restart at 0 with the daemon, as Prometheus expects).

Metric names: ``lews_*``; every name and label is listed in docs/report-and-status-page.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, int | float) and math.isfinite(float(x)):
        return float(x)
    return None


def _get(d: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


@dataclass(frozen=True)
class Scalar:
    """One number at ``path`` in the status -> one metric sample."""

    name: str
    kind: str  # gauge | counter
    path: str
    doc: str
    scale: float = 1.0


@dataclass(frozen=True)
class Keyed:
    """A mapping at ``path`` (key -> number) -> one metric with the key as label ``label``.

    ``prefix``: only keys starting with it, with the prefix removed (``pipeline.pipeline`` mixes kinds).
    ``field``: the mapping's values are objects; take this field of each."""

    name: str
    kind: str
    path: str
    label: str
    doc: str
    prefix: str = ""
    field: str = ""
    scale: float = 1.0


SCALARS: tuple[Scalar, ...] = (
    Scalar("lews_status_timestamp_seconds", "gauge", "time", "Data time of the last evaluation (epoch s)."),
    Scalar("lews_outbox_depth", "gauge", "publish.outbox.depth", "Messages queued in the outbox."),
    Scalar(
        "lews_system_clock_wrong", "gauge", "clock.system_clock_wrong", "1 when GNSS says the clock is wrong."
    ),
    Scalar("lews_clock_offset_seconds", "gauge", "clock.offset_s", "GNSS time - system clock (s)."),
    Scalar(
        "lews_outbox_oldest_age_seconds", "gauge", "publish.outbox.oldest_age_s", "Age of the oldest queued."
    ),
    Scalar("lews_outbox_enqueued", "counter", "publish.outbox.enqueued", "Messages committed to the outbox."),
    Scalar("lews_outbox_sent", "counter", "publish.outbox.sent", "Messages handed to the broker."),
    Scalar("lews_outbox_acked", "counter", "publish.outbox.acked", "Messages acknowledged by the broker."),
    Scalar("lews_outbox_coalesced", "counter", "publish.outbox.coalesced", "Messages replaced by newer."),
    Scalar("lews_mqtt_connected", "gauge", "publish.link.connected", "1 while connected to the broker."),
    Scalar("lews_mqtt_connects", "counter", "publish.link.connects", "Successful broker connections."),
    Scalar("lews_mqtt_inflight", "gauge", "publish.link.inflight", "Messages awaiting PUBACK."),
    Scalar("lews_commands_accepted", "counter", "publish.commands.accepted", "Accepted cmd/ messages."),
    Scalar("lews_store_accepted", "counter", "pipeline.store.accepted", "Samples accepted by the store."),
    Scalar("lews_store_committed", "counter", "pipeline.store.committed", "Samples committed to SQLite."),
    Scalar("lews_store_pruned", "counter", "pipeline.store.pruned", "Raw samples pruned by retention."),
)

KEYED: tuple[Keyed, ...] = (
    Keyed("lews_source_level", "gauge", "sources", "source", "Level per source (-1 no data).", field="level"),
    Keyed(
        "lews_source_fault", "gauge", "sources", "source", "1 when a source reports a fault.", field="fault"
    ),
    Keyed(
        "lews_outbox_depth_by_priority", "gauge", "publish.outbox.depth_by_priority", "priority", "Queued."
    ),
    Keyed("lews_outbox_dropped", "counter", "publish.outbox.dropped", "reason", "Outbox drops by reason."),
    Keyed("lews_commands_rejected", "counter", "publish.commands.rejected", "reason", "Rejected commands."),
    Keyed("lews_port_bytes", "counter", "pipeline.ports", "port", "Bytes read per port.", field="bytes"),
    Keyed("lews_port_connected", "gauge", "pipeline.ports", "port", "1 while open.", field="connected"),
    Keyed("lews_port_opens", "counter", "pipeline.ports", "port", "Port opens.", field="opens"),
    Keyed(
        "lews_port_open_failures", "counter", "pipeline.ports", "port", "Failed opens.", field="open_failures"
    ),
    Keyed("lews_port_disconnects", "counter", "pipeline.ports", "port", "Disconnects.", field="disconnects"),
    Keyed(
        "lews_port_silence_reopens",
        "counter",
        "pipeline.ports",
        "port",
        "Reopens after silence.",
        field="silence_reopens",
    ),
    Keyed(
        "lews_port_last_byte_timestamp_seconds",
        "gauge",
        "pipeline.ports",
        "port",
        "Last byte (epoch s).",
        field="last_byte_utc",
    ),
    Keyed(
        "lews_pipeline_samples",
        "counter",
        "pipeline.pipeline",
        "channel",
        "Samples per channel.",
        prefix="samples.",
    ),
    Keyed(
        "lews_pipeline_drops",
        "counter",
        "pipeline.pipeline",
        "reason",
        "Pipeline drops by reason.",
        prefix="drops.",
    ),
    Keyed("lews_inference_runs", "counter", "inference.counters", "outcome", "Inference runs by outcome."),
    Keyed(
        "lews_inference_warmup_seconds",
        "gauge",
        "inference.warmup_ms",
        "model",
        "Warm-up latency.",
        scale=1e-3,
    ),
    Keyed(
        "lews_stage_latency_seconds", "gauge", "latency_ms", "stage", "Last latency per stage.", scale=1e-3
    ),
    Keyed("lews_forecaster_events", "counter", "forecaster", "event", "Forecaster outcomes."),
    Keyed(
        "lews_daemon_events", "counter", "daemon", "event", "Daemon counters (evaluations, events, drops)."
    ),
    Keyed("lews_loop_runs", "counter", "loops", "loop", "Supervised loop runs.", field="runs"),
    Keyed("lews_loop_failures", "gauge", "loops", "loop", "Consecutive loop failures.", field="failures"),
)


def _family(name: str, kind: str, doc: str, labels: list[str]) -> GaugeMetricFamily | CounterMetricFamily:
    if kind == "counter":
        return CounterMetricFamily(name, doc, labels=labels)
    return GaugeMetricFamily(name, doc, labels=labels)


def _decoder_frames(
    status: Mapping[str, Any],
) -> tuple[list[tuple[str, float]], list[tuple[str, str, float]]]:
    """(port, frames) and (port, kind, errors) from the decoders (GNSS and firmware bridge shapes)."""
    frames: list[tuple[str, float]] = []
    errors: list[tuple[str, str, float]] = []
    decoders = _get(status, "pipeline.decoders")
    if not isinstance(decoders, Mapping):
        return frames, errors
    for port, dec in decoders.items():
        if not isinstance(dec, Mapping):
            continue
        bridge = dec.get("frames")
        if isinstance(bridge, Mapping):  # firmware bridge: {"frames": {"frames_ok", "errors": {...}}}
            n, errs = _num(bridge.get("frames_ok")), bridge.get("errors")
        else:  # GNSS: {"frames": n, "errors_by_kind": {...}}
            n, errs = _num(bridge), dec.get("errors_by_kind")
        if n is not None:
            frames.append((str(port), n))
        if isinstance(errs, Mapping):
            errors += [(str(port), str(k), v) for k, x in errs.items() if (v := _num(x)) is not None]
    return frames, errors


def families_from_status(
    status: Mapping[str, Any] | None, *, status_age_s: float | None = None
) -> list[Metric]:
    """The metric families for one status dict (pure; missing parts are simply absent)."""
    up = GaugeMetricFamily("lews_status_available", "1 when a daemon status was read.")
    up.add_metric([], 1.0 if status else 0.0)
    out: list[Metric] = [up]
    if not status:
        return out
    level = _num(status.get("published_level"))
    pub = GaugeMetricFamily("lews_published_level", "Published alert level (0-3; -1 before the first).")
    pub.add_metric([], level if level is not None else -1.0)
    fatal = GaugeMetricFamily("lews_fatal", "1 when the daemon stopped on a fatal error.")
    fatal.add_metric([], 1.0 if status.get("fatal") else 0.0)
    out += [pub, fatal]
    if status_age_s is not None:
        age = GaugeMetricFamily("lews_status_age_seconds", "Wall-clock age of status.json when scraped.")
        age.add_metric([], max(0.0, status_age_s))
        out.append(age)
    for s in SCALARS:
        v = _num(_get(status, s.path))
        if v is not None:
            fam = _family(s.name, s.kind, s.doc, [])
            fam.add_metric([], v * s.scale)
            out.append(fam)
    for k in KEYED:
        mapping = _get(status, k.path)
        if not isinstance(mapping, Mapping):
            continue
        fam = _family(k.name, k.kind, k.doc, [k.label])
        for key, raw in sorted(mapping.items()):
            key = str(key)
            if k.prefix:
                if not key.startswith(k.prefix):
                    continue
                key = key[len(k.prefix) :]
            v = _num(raw.get(k.field) if k.field and isinstance(raw, Mapping) else raw)
            if v is not None:
                fam.add_metric([key], v * k.scale)
        if fam.samples:
            out.append(fam)
    frames, errors = _decoder_frames(status)
    if frames:
        fam = CounterMetricFamily("lews_frames", "Frames decoded per port.", labels=["port"])
        for port, n in frames:
            fam.add_metric([port], n)
        out.append(fam)
    if errors:
        fam = CounterMetricFamily(
            "lews_frame_errors", "Frame errors per port and kind.", labels=["port", "kind"]
        )
        for port, kind, n in errors:
            fam.add_metric([port, kind], n)
        out.append(fam)
    inf = status.get("inference")
    if isinstance(inf, Mapping):
        info = InfoMetricFamily("lews_inference", "Inference backend in use.")
        info.add_metric([], {k: str(inf.get(k) or "") for k in ("mode", "precision", "bundle_id")})
        out.append(info)
    build = InfoMetricFamily("lews_agent", "Agent identity.")
    build.add_metric([], {k: str(status.get(k) or "") for k in ("version", "site", "node")})
    out.append(build)
    return out


class StatusCollector(Collector):
    """Holds the latest status; each scrape yields :func:`families_from_status` of it."""

    def __init__(self, wall: Any = time.time) -> None:
        self._lock = threading.Lock()
        self._status: Mapping[str, Any] | None = None
        self._written_at: float | None = None
        self._wall = wall

    def set(self, status: Mapping[str, Any] | None, written_at: float | None) -> None:
        with self._lock:
            self._status, self._written_at = status, written_at

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            status, written = self._status, self._written_at
        age = None if written is None else float(self._wall()) - written
        yield from families_from_status(status, status_age_s=age)


@dataclass
class RegistryMetrics:
    registry: CollectorRegistry
    collector: StatusCollector


def make_registry() -> RegistryMetrics:
    registry = CollectorRegistry(auto_describe=False)
    collector = StatusCollector()
    registry.register(collector)
    return RegistryMetrics(registry, collector)


def update_from_status(
    metrics: RegistryMetrics, status: Mapping[str, Any] | None, *, written_at: float | None = None
) -> None:
    """Make the next scrape show ``status`` (``written_at``: wall time the status was written)."""
    metrics.collector.set(status, written_at)


def exposition(metrics: RegistryMetrics) -> bytes:
    """The Prometheus text exposition of the registry."""
    return generate_latest(metrics.registry)
