"""Samples -> per-step site-series columns with completeness (pure functions, no I/O).

The same code turns live samples from the store and replayed captures into the daily (or hourly) steps
that training reads from the site-series CSV (docs/development.md, contracts 1 and 2). Steps are aligned
to UTC multiples of their length (a daily step starts at 00:00Z) and labelled by their start time.

Completeness of a step, per column, is the fraction of what the sensor should have delivered:

* ``count``: present samples / expected samples (step length x rate), capped at 1 (GNSS epochs, PGV
  windows, heartbeats);
* ``coverage``: the fraction of the step covered by the intervals between consecutive frames that are
  not longer than ``max_gap_s`` (rain: the tip counter is cumulative, so a lost frame loses no rain, but
  a long silence means the bridge was away and a reset counter may have lost some);
* ``as``: the completeness of another column (the wire state is known while heartbeats arrive).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.features.samples import CHANNEL_AGGREGATES, Sample

ChannelData = Mapping[str, tuple[np.ndarray, np.ndarray]]

DAY_S = 86400
HOUR_S = 3600


@dataclass(frozen=True)
class ColumnRule:
    """How one step column is computed from one channel."""

    column: str
    channel: str
    how: str  # median | spread | count | sum | max | count_ones | last
    completeness: str  # count:<expectation key> | coverage | as:<column>


# The step columns, as data. The first six are the site-series columns training reads.
COLUMN_RULES: tuple[ColumnRule, ...] = (
    ColumnRule("disp_e_mm", "gnss.e_mm", "median", "count:gnss"),
    ColumnRule("disp_n_mm", "gnss.n_mm", "median", "count:gnss"),
    ColumnRule("disp_u_mm", "gnss.u_mm", "median", "count:gnss"),
    ColumnRule("rain_mm", "rain.mm", "sum", "coverage"),
    ColumnRule("pgv_mm_s", "seismic.pgv_mm_s", "max", "count:seismic"),
    ColumnRule("seismic_events", "seismic.trigger", "count_ones", "as:pgv_mm_s"),
    ColumnRule("disp_e_spread_mm", "gnss.e_mm", "spread", "count:gnss"),
    ColumnRule("disp_n_spread_mm", "gnss.n_mm", "spread", "count:gnss"),
    ColumnRule("disp_u_spread_mm", "gnss.u_mm", "spread", "count:gnss"),
    ColumnRule("gnss_epochs", "gnss.e_mm", "count", "count:gnss"),
    ColumnRule("gnss_h_acc_mm", "gnss.h_acc_mm", "median", "count:gnss"),
    ColumnRule("gnss_num_sv", "gnss.num_sv", "median", "count:gnss"),
    ColumnRule("wire_state", "wire.state", "max", "as:supply_v"),
    ColumnRule("supply_v", "device.supply_v", "last", "count:heartbeat"),
    ColumnRule("temp_c", "device.temp_c", "last", "count:heartbeat"),
)
SITE_SERIES_COLUMNS: tuple[str, ...] = (
    "disp_e_mm",
    "disp_n_mm",
    "disp_u_mm",
    "rain_mm",
    "pgv_mm_s",
    "seismic_events",
)
COLUMNS: tuple[str, ...] = tuple(r.column for r in COLUMN_RULES)
# Channels whose value persists between samples: the state before a step counts in that step.
STATEFUL_CHANNELS = frozenset({"wire.state"})
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Expectations:
    """What a complete step contains: sample periods of each sensor."""

    gnss_period_s: float = 1.0
    seismic_period_s: float = 60.0
    heartbeat_period_s: float = 10.0
    rain_max_gap_s: float = 300.0

    def period(self, key: str) -> float:
        return {
            "gnss": self.gnss_period_s,
            "seismic": self.seismic_period_s,
            "heartbeat": self.heartbeat_period_s,
        }[key]


@dataclass
class StepTable:
    """Steps of one length: start times and, per column, value, sample count and completeness."""

    step_s: int
    times: np.ndarray  # float64 epoch seconds of each step start
    values: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    completeness: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.times.size)


def group_samples(samples: Iterable[Sample]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Samples -> channel -> (t, value) arrays sorted by time. Unknown channels are left out."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        if s.channel in CHANNEL_AGGREGATES:
            buckets.setdefault(s.channel, []).append((s.t, s.value))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ch, pairs in buckets.items():
        arr = np.asarray(pairs, dtype=np.float64)
        order = np.argsort(arr[:, 0], kind="stable")
        out[ch] = (arr[order, 0], arr[order, 1])
    return out


def step_start(t: float, step_s: int) -> float:
    """UTC-aligned start of the step that contains ``t``."""
    return float(np.floor(t / step_s) * step_s)


def _reduce(how: str, v: np.ndarray) -> float:
    if v.size == 0:
        return 0.0 if how in ("count", "count_ones") else float("nan")
    if how == "median":
        return float(np.median(v))
    if how == "spread":
        return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))
    if how == "count":
        return float(v.size)
    if how == "sum":
        return float(np.sum(v))
    if how == "max":
        return float(np.max(v))
    if how == "count_ones":
        return float(np.count_nonzero(v == 1.0))
    if how == "last":
        return float(v[-1])
    raise ValueError(f"unknown aggregate {how!r}")


def _coverage(t: np.ndarray, lo: float, hi: float, max_gap_s: float, prev_t: float | None) -> float:
    """Fraction of [lo, hi) covered by intervals (t[i-1], t[i]] no longer than max_gap_s.

    ``t`` holds the frames in the step and the first frame after it (its interval may start inside).
    """
    if t.size == 0:
        return 0.0
    starts = np.empty_like(t)
    starts[1:] = t[:-1]
    # The first frame's interval starts at the frame before it; unknown: assume one max gap.
    starts[0] = prev_t if prev_t is not None else t[0] - max_gap_s
    ok = (t - starts) <= max_gap_s
    a = np.clip(starts[ok], lo, hi)
    b = np.clip(t[ok], lo, hi)
    return float(min(1.0, np.sum(b - a) / (hi - lo)))


def aggregate(
    data: ChannelData,
    step_s: int,
    start: float,
    end: float,
    expect: Expectations | None = None,
) -> StepTable:
    """Aggregate samples into steps ``[start, end)`` (both aligned to ``step_s``).

    ``data`` may contain samples before ``start``: they only provide the state carried into the first
    step (wire state) and the previous frame time (rain coverage).
    """
    if step_s <= 0:
        raise ValueError(f"step length must be positive, got {step_s}")
    expect = expect or Expectations()
    lo0 = step_start(start, step_s)
    n = max(0, int(np.ceil((end - lo0) / step_s)))
    times = lo0 + step_s * np.arange(n, dtype=np.float64)
    table = StepTable(step_s=step_s, times=times)
    empty = (np.empty(0), np.empty(0))
    for rule in COLUMN_RULES:
        t, v = data.get(rule.channel, empty)
        edges = np.searchsorted(t, np.append(times, lo0 + n * step_s), side="left")
        vals = np.full(n, np.nan)
        counts = np.zeros(n, dtype=np.int64)
        comp = np.zeros(n)
        for i in range(n):
            a, b = int(edges[i]), int(edges[i + 1])
            seg = v[a:b]
            if rule.channel in STATEFUL_CHANNELS and a > 0:
                seg = np.concatenate(([v[a - 1]], seg))  # state carried in from before the step
            vals[i] = _reduce(rule.how, seg)
            counts[i] = b - a
            if rule.completeness == "coverage":
                prev = float(t[a - 1]) if a > 0 else None
                comp[i] = _coverage(t[a : b + 1], times[i], times[i] + step_s, expect.rain_max_gap_s, prev)
            elif rule.completeness.startswith("count:"):
                expected = step_s / expect.period(rule.completeness.split(":", 1)[1])
                comp[i] = min(1.0, (b - a) / expected)
        if rule.how in ("count", "count_ones"):
            vals[counts == 0] = np.nan if rule.how == "count_ones" else 0.0
        table.values[rule.column] = vals
        table.counts[rule.column] = counts
        table.completeness[rule.column] = comp
    for rule in COLUMN_RULES:
        if rule.completeness.startswith("as:"):
            other = rule.completeness.split(":", 1)[1]
            table.completeness[rule.column] = table.completeness[other].copy()
    _mask_event_counts(table)
    return table


def _mask_event_counts(table: StepTable) -> None:
    """An event count of 0 is only a fact when the seismic stream was there; else it is unknown."""
    present = table.counts["pgv_mm_s"] > 0
    ev = table.values["seismic_events"]
    ev[present & np.isnan(ev)] = 0.0
    ev[~present & (table.counts["seismic_events"] == 0)] = np.nan


def _empty_table(step_s: int, times: np.ndarray) -> StepTable:
    n = times.size
    table = StepTable(step_s=step_s, times=times)
    for col in COLUMNS:
        table.values[col] = np.full(n, np.nan)
        table.counts[col] = np.zeros(n, dtype=np.int64)
        table.completeness[col] = np.zeros(n)
    return table


def steps_from_rows(step_s: int, rows: Iterable[tuple[float, str, float | None, int, float]]) -> StepTable:
    """Rows (start, column, value or None, count, completeness) -> a table over the starts present."""
    rows = list(rows)
    times = np.array(sorted({float(r[0]) for r in rows}), dtype=np.float64)
    index = {t: i for i, t in enumerate(times.tolist())}
    table = _empty_table(step_s, times)
    for t, col, value, count, comp in rows:
        if col in table.values:
            i = index[float(t)]
            table.values[col][i] = np.nan if value is None else float(value)
            table.counts[col][i] = int(count)
            table.completeness[col][i] = float(comp)
    return table


def align_steps(table: StepTable, times: np.ndarray) -> StepTable:
    """The table on the slots ``times`` (a superset of its own): missing slots NaN, completeness 0."""
    out = _empty_table(table.step_s, times)
    pos = np.searchsorted(times, table.times)
    for col in COLUMNS:
        out.values[col][pos] = table.values[col]
        out.counts[col][pos] = table.counts[col]
        out.completeness[col][pos] = table.completeness[col]
    return out


def aggregate_samples(
    samples: Iterable[Sample], step_s: int, expect: Expectations | None = None
) -> StepTable:
    """Convenience: aggregate a list of samples over every step they touch."""
    data = group_samples(samples)
    ts = [t for t, _ in data.values() if t.size]
    if not ts:
        return StepTable(step_s=step_s, times=np.empty(0))
    lo = min(float(t[0]) for t in ts)
    hi = max(float(t[-1]) for t in ts)
    return aggregate(data, step_s, step_start(lo, step_s), step_start(hi, step_s) + step_s, expect)


def step_rows(table: StepTable, updated: float) -> list[tuple[Any, ...]]:
    """The ``steps`` table rows of ``table`` (step_s, start, col, value or NULL, count, completeness,
    updated)."""
    return [
        (table.step_s, float(t), col, None if math.isnan(v := float(table.values[col][i])) else v,
         int(table.counts[col][i]), float(table.completeness[col][i]), updated)
        for col in table.values
        for i, t in enumerate(table.times)
    ]  # fmt: skip
