"""Summaries of capture contents for ``agent inspect``: GNSS (UBX / NMEA) and firmware-bridge streams.

Pure functions of the bytes: every number in the summary comes from the same framer, epoch assembly,
gate and ENU conversion the daemon uses. The local solution is relative to ``--ref`` when given,
else to the median position of the gated epochs (so its spread shows the scatter of the log).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pymap3d

from agent.sensors.gnss import (
    GATE_PRESETS,
    PARSED_TYPES,
    POSITION_SOURCES,
    GatedEpoch,
    Reference,
    gate,
    solve_steps,
    to_enu_mm,
)
from agent.sensors.gnss_epochs import CARRIER_NAMES, Epoch, EpochAssembler
from agent.sensors.gnss_frames import GnssFramer

CARRIER_LABEL = {v: k for k, v in CARRIER_NAMES.items()}
FIX_LABEL = {0: "no fix", 1: "dead reckoning", 2: "2D", 3: "3D", 4: "GNSS+DR", 5: "time only"}
DETECT_BYTES = 256 * 1024


@contextlib.contextmanager
def quiet(*names: str) -> Iterator[None]:
    """Silence per-burst warnings of these loggers: inspect reports the same counts in its summary."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _protocol_ok(protocol: str, fmt: str) -> bool:
    return fmt in ("auto", "gnss") or protocol.lower() == fmt


def decode_epochs(data: bytes, fmt: str) -> tuple[GnssFramer, EpochAssembler, list[Epoch], Counter[str]]:
    """Frame and assemble ``data``; ``fmt`` ubx / nmea keeps only that protocol (others: ``ignored``)."""
    framer = GnssFramer(PARSED_TYPES)
    assembler = EpochAssembler(sources=POSITION_SOURCES)
    ignored: Counter[str] = Counter()
    epochs: list[Epoch] = []
    frames = framer.feed(data) + framer.finish()
    for frame in frames:
        if not _protocol_ok(frame.protocol, fmt):
            ignored[frame.identity] += 1
            continue
        if frame.msg is not None:
            epochs += assembler.add_message(frame.identity, frame.msg)
    epochs += assembler.finish()
    return framer, assembler, epochs, ignored


def _median_reference(epochs: list[Epoch]) -> Reference | None:
    pts = np.array([(e.lat, e.lon, e.h_m) for e in epochs if e.rel_enu_mm is None])
    pts = pts[np.all(np.isfinite(pts), axis=1)] if len(pts) else pts
    if not len(pts):
        return None
    lat, lon, h = np.median(pts, axis=0)
    return Reference(float(lat), float(lon), float(h))


def _stats(values: list[float]) -> dict[str, float] | None:
    arr = np.array([v for v in values if math.isfinite(v)])
    if not len(arr):
        return None
    return {"min": float(arr.min()), "median": float(np.median(arr)), "max": float(arr.max())}


def summarize_gnss(
    data: bytes,
    *,
    fmt: str = "auto",
    gate_preset: str = "standalone",
    reference: Reference | None = None,
    step_s: float | None = None,
) -> dict[str, Any]:
    framer, assembler, epochs, ignored = decode_epochs(data, fmt)
    cfg = GATE_PRESETS[gate_preset]
    reasons = [gate(e, cfg) for e in epochs]
    passed = [e for e, r in zip(epochs, reasons, strict=True) if r is None]
    ref_source = "given"
    if reference is None:
        reference = _median_reference(passed)
        ref_source = "median of gated epochs"
        if reference is None and any(e.rel_enu_mm is not None for e in passed):
            ref_source = "RTK base (NAV-RELPOSNED)"
    gated: list[GatedEpoch] = []
    for e, r in zip(epochs, reasons, strict=True):
        if e.rel_enu_mm is not None:  # relative to the RTK base: no reference needed
            ee, nn, uu = to_enu_mm(e, reference or Reference(0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
        elif reference is not None:
            ee, nn, uu = to_enu_mm(e, reference, (0.0, 0.0, 0.0))
        else:
            ee = nn = uu = math.nan
        gated.append(
            GatedEpoch(e.t, r is None, r, e.source, ee, nn, uu, e.h_acc_mm, e.num_sv, e.carrier, e.fix_type)
        )
    c = framer.counters
    messages = {k: v for k, v in sorted(c.messages.items()) if k not in ignored}
    out: dict[str, Any] = {
        "format": fmt,
        "bytes": c.bytes,
        "messages": messages,
        "ignored_messages": dict(sorted(ignored.items())),
        "frames": c.frames,
        "errors": c.errors,
        "errors_by_kind": {k: v for k, v in c.errors_by_kind.items() if v},
        "skipped_bytes": c.skipped_bytes,
        "resyncs": c.resyncs,
        "epochs": {
            "total": len(epochs),
            "gated": len(passed),
            "gate": gate_preset,
            "rejected": dict(Counter(r for r in reasons if r is not None)),
            "dropped": dict(assembler.drops),
            "by_source": dict(Counter(e.source for e in epochs)),
            "fix_type": dict(Counter(FIX_LABEL.get(e.fix_type, str(e.fix_type)) for e in epochs)),
            "carrier": dict(Counter(CARRIER_LABEL.get(e.carrier, str(e.carrier)) for e in epochs)),
            "num_sv": _stats([e.num_sv for e in epochs]),
            "h_acc_mm": _stats([e.h_acc_mm for e in epochs]),
            "t_first": min((e.t for e in epochs), default=None),
            "t_last": max((e.t for e in epochs), default=None),
        },
        "solution": None,
    }
    whole = None
    if passed:
        t_first = min(g.t for g in gated)
        (whole,) = solve_steps(gated, step_s=max(g.t for g in gated) - t_first + 1.0, t0=t_first)
    if whole is not None:
        ref_out: dict[str, Any] = {"source": ref_source}
        if reference is not None:
            ref_out.update(lat=reference.lat, lon=reference.lon, h_m=reference.h_m)
        out["solution"] = {
            "reference": ref_out,
            "count": whole.count,
            "fraction_gated": whole.fraction_gated,
            "median_enu_mm": list(whole.median_mm),
            "mad_enu_mm": list(whole.mad_mm),
            "iqr_enu_mm": list(whole.iqr_mm),
        }
        if reference is not None and ref_source != "given":
            e_m, n_m, u_m = (v / 1000.0 for v in whole.median_mm)
            lat, lon, h = pymap3d.enu2geodetic(e_m, n_m, u_m, reference.lat, reference.lon, reference.h_m)
            out["solution"]["median_position"] = {"lat": float(lat), "lon": float(lon), "h_m": float(h)}
    if step_s and gated:
        out["steps"] = [
            {
                "t_start": s.t_start,
                "count": s.count,
                "total": s.total,
                "median_enu_mm": list(s.median_mm),
                "mad_enu_mm": list(s.mad_mm),
            }
            for s in solve_steps(gated, step_s=step_s)
        ]
    return out


def detect_format(data: bytes) -> str:
    """Guess the format from the first bytes.

    "bridge" when COBS bridge frames explain more of them than UBX/NMEA frames do, else "ubx",
    "nmea" or "gnss" (both) by what was found; "gnss" when nothing fits.
    """
    head = data[:DETECT_BYTES]
    framer = GnssFramer(frozenset())
    framer.feed(head)
    framer.finish()
    gnss_cover = framer.counters.frame_bytes / max(1, len(head))
    bridge_cover = 0.0
    try:
        from firmware_bridge.reader import FrameDecoder

        dec = FrameDecoder(name="detect")
        dec.decode(head)
        bridge_cover = dec.counters.bytes_ok / max(1, len(head))
    except ImportError:  # firmware_bridge not installed: GNSS only
        bridge_cover = 0.0
    if bridge_cover > gnss_cover and bridge_cover > 0.1:
        return "bridge"
    ubx = any("-" in k for k in framer.counters.messages)
    nmea = any("-" not in k for k in framer.counters.messages)
    return "ubx" if ubx and not nmea else "nmea" if nmea and not ubx else "gnss"
