"""A whole GNSS capture decoded as arrays: the samples, counters and emission points of the live path
(:class:`agent.sensors.gnss.GnssProcessor` behind :class:`agent.sensors.decoders.GnssDecoder`).

Supported: the stream of a receiver that gives one UBX NAV-PVT per epoch (valid date and time), with
NAV-HPPOSLLH, NMEA GGA / RMC and any messages the agent only counts; the configured position sources
starting with NAV-PVT. For such a stream the epoch assembler's rules reduce to array operations: every
keyed message (NAV-PVT, valid NAV-HPPOSLLH, GGA) gets the epoch key the assembler would give it
(``round(t * 100)`` of its UTC time, resolved through the same date and iTOW contexts); keys never go
back, so epochs are the runs of equal keys, each holding one NAV-PVT; the epoch is that NAV-PVT with
the position of the last valid NAV-HPPOSLLH of the run; the gate rules run column-wise; the local
frame conversion is pymap3d's on arrays. Epoch ``g`` is emitted by the read that completes the first
message of epoch ``g + 1`` (the last one at the end of the stream), as live. Anything else raises
:class:`Unsupported`. tests/test_replay_columnar.py compares the result with the live path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymap3d
from numpy.lib.stride_tricks import sliding_window_view

from agent.errors import Unsupported
from agent.sensors.gnss import GATE_REASONS, PARSED_TYPES, GnssConfig
from agent.sensors.gnss_epochs import CARRIER_NAMES
from agent.sensors.gnss_frames import ERROR_KINDS, ubx_identity
from agent.sensors.gnss_frames_columnar import UBX, FrameArrays, frame_stream, nmea_headers, ubx_ids
from agent.sensors.nmea_columnar import (
    TALKERS,
    US_PER_DAY,
    days_from_civil,
    gga_times,
    rmc_fields,
    valid_date,
)

PVT_ID, HPP_ID = 0x0107, 0x0114
OTHER, PVT, HPP, GGA, RMC = 0, 1, 2, 3, 4
_PVT_DTYPE = np.dtype(
    [("itow", "<u4"), ("year", "<u2"), ("month", "u1"), ("day", "u1"), ("hour", "u1"), ("min", "u1"),
     ("sec", "u1"), ("valid", "u1"), ("tacc", "<u4"), ("nano", "<i4"), ("fix_type", "u1"),
     ("flags", "u1"), ("flags2", "u1"), ("num_sv", "u1"), ("lon", "<i4"), ("lat", "<i4"),
     ("height", "<i4"), ("hmsl", "<i4"), ("hacc", "<u4"), ("vacc", "<u4"), ("rest", "V44")]
)  # fmt: skip
_HPP_DTYPE = np.dtype(
    [("version", "u1"), ("res", "<u2"), ("flags", "u1"), ("itow", "<u4"), ("lon", "<i4"), ("lat", "<i4"),
     ("height", "<i4"), ("hmsl", "<i4"), ("lon_hp", "i1"), ("lat_hp", "i1"), ("height_hp", "i1"),
     ("hmsl_hp", "i1"), ("hacc", "<u4"), ("vacc", "<u4")]
)  # fmt: skip
CHANNELS = ("gnss.e_mm", "gnss.n_mm", "gnss.u_mm", "gnss.h_acc_mm", "gnss.num_sv")


@dataclass(frozen=True)
class GnssColumns:
    """Gated epochs (time, channel values), the read that emitted each (-1: the end of the stream),
    every valid receiver time with its read (for the clock), and the decoder's counters."""

    t: np.ndarray
    values: dict[str, np.ndarray]
    emit_record: np.ndarray
    fix_record: np.ndarray
    fix_t: np.ndarray
    counters: dict[str, Any]


def _payloads(f: FrameArrays, frames: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    if np.any(f.end[frames] - f.start[frames] - 8 != dtype.itemsize):
        raise Unsupported("a NAV-PVT / NAV-HPPOSLLH of another length")
    if not len(frames):
        return np.zeros(0, dtype=dtype)
    rows = sliding_window_view(f.buf, dtype.itemsize)[f.start[frames] + 6]  # copies the payloads
    return rows.view(dtype).ravel()


def _text_span(f: FrameArrays, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the NMEA ``frames`` lie in ``f.nmea_text`` (the NMEA lines joined in order)."""
    nmea = np.flatnonzero(f.kind != UBX)
    text_end = np.cumsum(f.end[nmea] - f.start[nmea])[np.searchsorted(nmea, frames)]
    return text_end - (f.end[frames] - f.start[frames]), text_end


def _last_before(setter_pos: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Index into ``setter_pos`` (sorted) of the last one before each ``pos``; -1 where none."""
    return np.searchsorted(setter_pos, pos, side="left") - 1


def _message_types(f: FrameArrays) -> tuple[np.ndarray, Counter[str]]:
    typ = np.zeros(len(f), dtype=np.int64)
    messages: Counter[str] = Counter()
    ubx = np.flatnonzero(f.kind == UBX)
    ids = ubx_ids(f)
    for code, n in zip(*np.unique(ids, return_counts=True), strict=True):
        name = ubx_identity(bytes((int(code) >> 8, int(code) & 0xFF)))
        messages[name] += int(n)
        if name in PARSED_TYPES and int(code) not in (PVT_ID, HPP_ID):
            raise Unsupported(f"{name} messages")
    typ[ubx[ids == PVT_ID]], typ[ubx[ids == HPP_ID]] = PVT, HPP
    nmea = np.flatnonzero(f.kind != UBX)
    codes, names = nmea_headers(f)
    for k, name in enumerate(names):
        messages[name] += int(np.count_nonzero(codes == k))
        kind = {"GGA": GGA, "RMC": RMC}.get(name[2:]) if len(name) == 5 else None
        if kind is not None and name[:2] not in TALKERS:
            raise Unsupported(f"{name} sentences (a talker the fast decoder leaves to pynmeagps)")
        if kind is not None:
            typ[nmea[codes == k]] = kind
        elif name[2:] in PARSED_TYPES or name in PARSED_TYPES:
            raise Unsupported(f"{name} sentences")
    return typ, messages


def decode_gnss(data: bytes, rec_end: np.ndarray, cfg: GnssConfig) -> GnssColumns:
    """Decode one port's whole stream; ``rec_end``: end offset of each read in ``data``."""
    if not cfg.sources or cfg.sources[0] != "NAV-PVT":
        raise Unsupported("position sources that do not start with NAV-PVT")
    f = frame_stream(data)
    typ, messages = _message_types(f)
    pvt_i, hpp_i = np.flatnonzero(typ == PVT), np.flatnonzero(typ == HPP)
    gga_i, rmc_i = np.flatnonzero(typ == GGA), np.flatnonzero(typ == RMC)
    pvt = _payloads(f, pvt_i, _PVT_DTYPE)
    hpp = _payloads(f, hpp_i, _HPP_DTYPE)
    y, mo, d = pvt["year"].astype(np.int64), pvt["month"].astype(np.int64), pvt["day"].astype(np.int64)
    ok_time = ((pvt["valid"] & 3) == 3) & valid_date(y, mo, d) & (y >= 1)
    ok_time &= (pvt["hour"] <= 23) & (pvt["min"] <= 59) & (pvt["sec"] <= 59)
    if not np.all(ok_time):
        raise Unsupported("a NAV-PVT without a valid date and time")
    hms = (pvt["hour"].astype(np.int64) * 60 + pvt["min"]) * 60 + pvt["sec"]
    t_pvt = (days_from_civil(y, mo, d) * 86400 + hms).astype(np.float64) + pvt["nano"].astype(
        np.float64
    ) * 1e-9
    itow_offset = t_pvt - pvt["itow"].astype(np.float64) / 1000.0

    # NAV-HPPOSLLH: keyed when valid and after a NAV-PVT (the iTOW -> UTC offset)
    ctx = _last_before(pvt_i, hpp_i)
    hpp_keyed = ((hpp["flags"] & 1) == 0) & (ctx >= 0)
    t_hpp = hpp["itow"].astype(np.float64) / 1000.0 + itow_offset[np.maximum(ctx, 0)]

    # GGA: time of day dated by the last NAV-PVT or RMC before it (TimeContext.resolve_tod)
    gga_tod = gga_times(f.nmea_text, *_text_span(f, gga_i))
    rmc_day, rmc_tod, rmc_ok = rmc_fields(f.nmea_text, *_text_span(f, rmc_i))
    setters = np.concatenate((pvt_i, rmc_i))
    order = np.argsort(setters, kind="stable")
    pvt_day = np.floor(t_pvt / 86400.0).astype(np.int64)
    set_day = np.concatenate((pvt_day, rmc_day))[order]
    set_tod = np.concatenate((t_pvt - pvt_day * 86400.0, rmc_tod / 1e6))[order]
    k = _last_before(setters[order], gga_i)
    if np.any(k < 0):
        raise Unsupported("a GGA before any date (dated by the host clock live)")
    diff = gga_tod / 1e6 - set_tod[k]
    day = set_day[k] + (diff < -43200) - (diff > 43200)
    t_gga = (day * US_PER_DAY + gga_tod).astype(np.float64) / 1e6

    keyed = np.concatenate((pvt_i, hpp_i[hpp_keyed], gga_i))
    t_keyed = np.concatenate((t_pvt, t_hpp[hpp_keyed], t_gga))
    order = np.argsort(keyed, kind="stable")
    keyed, keys = keyed[order], np.rint(t_keyed[order] * 100)
    if len(keys) and np.any(np.diff(keys) < 0):
        raise Unsupported("epoch times that go back (stale messages)")
    new_group = np.concatenate(([True], np.diff(keys) > 0)) if len(keys) else np.zeros(0, dtype=bool)
    group = np.cumsum(new_group) - 1
    n_groups = int(group[-1]) + 1 if len(group) else 0
    pos_of = np.searchsorted(keyed, pvt_i)
    pvt_group = group[pos_of]
    if n_groups != len(pvt_i) or np.any(np.bincount(pvt_group, minlength=n_groups) != 1):
        raise Unsupported("an epoch without exactly one NAV-PVT")
    flags3 = f.buf[f.start[pvt_i] + 6 + 78]  # NAV-PVT flags3 (invalidLlh in bit 0)
    hpp_group = group[np.searchsorted(keyed, hpp_i[hpp_keyed])]
    epochs = _epochs(pvt, flags3, pvt_group, t_pvt, hpp[hpp_keyed], hpp_group)
    firsts = keyed[new_group]
    emit = np.searchsorted(rec_end, f.end[firsts[1:]], side="left")
    emit_record = np.concatenate((emit, [-1])) if n_groups else np.zeros(0, dtype=np.int64)
    t, values, counts = _gate(epochs, cfg)
    passed = counts.pop("_passed")
    fix_t = np.concatenate((t_pvt, (rmc_day * US_PER_DAY + rmc_tod)[rmc_ok].astype(np.float64) / 1e6))
    fix_frames = np.concatenate((pvt_i, rmc_i[rmc_ok]))
    counters = {
        "bytes": len(data),
        "frames": len(f),
        "frame_bytes": len(data),
        "skipped_bytes": 0,
        "resyncs": 0,
        "errors": 0,
        "errors_by_kind": dict.fromkeys(ERROR_KINDS, 0),
        "messages": dict(sorted(messages.items())),
        "epochs": n_groups,
        "epochs_gated": len(t),
        "rejected": counts,
        "epoch_drops": {},
    }
    return GnssColumns(
        t=t,
        values=values,
        emit_record=emit_record[passed],
        fix_record=np.searchsorted(rec_end, f.end[fix_frames], side="left"),
        fix_t=fix_t,
        counters=counters,
    )


def _epochs(
    pvt: np.ndarray,
    flags3: np.ndarray,
    pvt_group: np.ndarray,
    t_pvt: np.ndarray,
    hpp: np.ndarray,
    hpp_group: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per epoch (in order): the NAV-PVT's fields, its position replaced by the epoch's last valid
    NAV-HPPOSLLH (pyubx2's values: 1e-7 deg + 1e-9 deg parts, mm + 0.1 mm parts, hAcc in 0.1 mm)."""
    by = np.argsort(pvt_group)
    p = pvt[by]
    out = {
        "t": t_pvt[by],
        "fix_type": p["fix_type"].astype(np.int64),
        "carrier": ((p["flags"] >> 6) & 3).astype(np.int64),
        "fix_ok": ((p["flags"] & 1) == 1) & ((flags3[by] & 1) == 0),
        "num_sv": p["num_sv"].astype(np.float64),
        "h_acc": p["hacc"].astype(np.float64),
        "lat": p["lat"].astype(np.float64) / 1e7,
        "lon": p["lon"].astype(np.float64) / 1e7,
        "h_m": p["height"].astype(np.float64) / 1000.0,
    }
    last = np.full(len(by), -1, dtype=np.int64)
    np.maximum.at(last, hpp_group, np.arange(len(hpp_group)))
    has = last >= 0
    h = hpp[last[has]]
    out["lat"][has] = (h["lat"].astype(np.int64) * 100 + h["lat_hp"]).astype(np.float64) / 1e9
    out["lon"][has] = (h["lon"].astype(np.int64) * 100 + h["lon_hp"]).astype(np.float64) / 1e9
    height_tenths = h["height"].astype(np.int64) * 10 + h["height_hp"]
    height = h["height"].astype(np.float64) + h["height_hp"].astype(np.float64) / 10.0
    out["h_m"][has] = round12_tenths(height_tenths, height) / 1000.0
    out["h_acc"][has] = round12_tenths(h["hacc"].astype(np.int64), h["hacc"].astype(np.float64) * 0.1)
    return out


def round12_tenths(tenths: np.ndarray, approx: np.ndarray) -> np.ndarray:
    """Python's ``round(approx, 12)`` (pyubx2's scaling) of values whose exact decimal is ``tenths / 10``
    and ``approx`` within an ulp of it. Below 2048 the ulp is under 0.5e-12, so the 12-decimal rounding
    gives that decimal and the result is ``tenths / 10.0``; from 8192 on the ulp exceeds 1e-12 and
    rounding keeps ``approx``; in between Python's own ``round`` decides, value by value."""
    size = np.abs(approx)
    out = np.where(size < 2048, tenths / 10.0, approx)
    mid = (size >= 2048) & (size < 8192)
    if np.any(mid):
        out[mid] = [round(x, 12) for x in approx[mid].tolist()]
    return out


def _gate(e: dict[str, np.ndarray], cfg: GnssConfig) -> tuple[np.ndarray, dict[str, np.ndarray], Any]:
    """GATE_RULES column-wise (first failing rule named), then the local frame; returns the gated
    epochs' times and channel values and the rejection counts (plus the pass mask as ``_passed``)."""
    g = cfg.gate
    n = len(e["t"])

    def unknown_ok(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), g.accept_unknown, ok)

    rules = {
        "fix_not_ok": e["fix_ok"] | (not g.require_fix_ok),
        "fix_type": np.isin(e["fix_type"], sorted(g.fix_types)),
        "relpos_invalid": np.ones(n, dtype=bool),
        "carrier": e["carrier"] >= CARRIER_NAMES[g.min_carrier],
        "num_sv": unknown_ok(e["num_sv"], e["num_sv"] >= g.min_num_sv),
        "h_acc": unknown_ok(e["h_acc"], e["h_acc"] <= g.max_h_acc_mm),
        "hdop": np.full(n, g.accept_unknown),  # NAV-PVT epochs carry no HDOP
        "no_position": np.isfinite(e["lat"]) & np.isfinite(e["lon"]) & np.isfinite(e["h_m"]),
    }
    reason = np.full(n, -1, dtype=np.int64)
    for k, name in enumerate(GATE_REASONS):
        reason[(reason < 0) & ~rules[name]] = k
    ok = reason < 0
    ref = cfg.reference
    e_m, n_m, u_m = pymap3d.geodetic2enu(e["lat"][ok], e["lon"][ok], e["h_m"][ok], ref.lat, ref.lon, ref.h_m)
    enu = [np.asarray(v, dtype=np.float64) * 1000.0 for v in (e_m, n_m, u_m)]
    bad = ~(np.isfinite(enu[0]) & np.isfinite(enu[1]) & np.isfinite(enu[2]))
    bad |= np.isinf(e["h_acc"][ok]) | np.isinf(e["num_sv"][ok])
    counts: dict[str, Any] = {name: int(np.count_nonzero(reason == k)) for k, name in enumerate(GATE_REASONS)}
    counts["non_finite"] = int(np.count_nonzero(bad))
    passed = np.flatnonzero(ok)[~bad]
    keep = ~bad
    values = dict(zip(CHANNELS[:3], (v[keep] for v in enu), strict=True))
    values["gnss.h_acc_mm"] = e["h_acc"][passed]
    values["gnss.num_sv"] = e["num_sv"][passed]
    pass_mask = np.zeros(n, dtype=bool)
    pass_mask[passed] = True
    counts["_passed"] = pass_mask
    return e["t"][passed], values, counts
