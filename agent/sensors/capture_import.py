"""Turn a receiver log (raw u-blox UBX and/or NMEA bytes, optionally gzip) into a replayable capture.

A receiver log has no arrival times, so each frame is stamped with the receiver's own time of the
epoch it belongs to: NAV-PVT / NAV-TIMEUTC / RMC / ZDA give the date and time, GGA / GNS / GST a time
of day, NAV-SOL a GPS week and time of week, and the other NAV messages their iTOW once a NAV-PVT has
tied iTOW to UTC. Frames that carry no time take the time of the last one that did (those before the
first time, the first time). Consecutive frames of one epoch become one capture record, as a bulk
read of the port would. Bytes outside any checksum-valid frame are counted and left out.

The capture then goes through ``agent replay`` like one recorded on a gateway.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.compat import UTC
from agent.errors import CaptureError
from agent.sensors.capture import CaptureWriter
from agent.sensors.gnss_epochs import TimeContext, gps_to_utc
from agent.sensors.gnss_frames import Frame, GnssFramer

TIME_TYPES = frozenset(
    {"NAV-PVT", "NAV-TIMEUTC", "NAV-SOL", "NAV-HPPOSLLH", "NAV-RELPOSNED", "RMC", "ZDA", "GGA", "GNS", "GST"}
)
BLOCK = 1 << 16


@dataclass
class ImportResult:
    """What the import found and wrote."""

    directory: Path
    port: str
    frames: int = 0
    records: int = 0
    bytes_in: int = 0
    bytes_written: int = 0
    undated_frames: int = 0  # frames before the first receiver time (stamped with it)
    t_first: float = math.nan
    t_last: float = math.nan
    messages: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "capture": str(self.directory),
            "port": self.port,
            "frames": self.frames,
            "records": self.records,
            "bytes_in": self.bytes_in,
            "bytes_written": self.bytes_written,
            "bytes_outside_frames": self.bytes_in - self.bytes_written,
            "undated_frames": self.undated_frames,
            "t_first_utc": _iso(self.t_first),
            "t_last_utc": _iso(self.t_last),
            "messages": dict(sorted(self.messages.items())),
        }


def _iso(t: float) -> str | None:
    if not math.isfinite(t):
        return None
    return dt.datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _kind(identity: str) -> str:
    return identity if "-" in identity else identity[2:]


def frame_time(frame: Frame, ctx: TimeContext) -> float | None:
    """UTC seconds this frame's epoch stands for, updating ``ctx`` (date, iTOW offset); None: no time."""
    msg, kind = frame.msg, _kind(frame.identity)
    if msg is None:
        return None
    if kind == "NAV-PVT":
        if not (getattr(msg, "validDate", False) and getattr(msg, "validTime", False)):
            return None
        try:
            base = dt.datetime(msg.year, msg.month, msg.day, msg.hour, msg.min, msg.second)
        except (TypeError, ValueError):
            return None
        t = base.replace(tzinfo=UTC).timestamp() + float(msg.nano) * 1e-9
        ctx.itow_offset_s = t - float(msg.iTOW) / 1000.0
        ctx.set_date(base.date(), base.time())
        return t
    if kind == "NAV-TIMEUTC" and getattr(msg, "validUTC", False):
        try:
            stamp = dt.datetime(msg.year, msg.month, msg.day, msg.hour, msg.min, msg.sec)
        except (TypeError, ValueError):
            return None
        ctx.set_date(stamp.date(), stamp.time())
        return stamp.replace(tzinfo=UTC).timestamp()
    if kind == "NAV-SOL":
        if not (getattr(msg, "wknSet", False) and getattr(msg, "towSet", False)):
            return None
        return gps_to_utc(int(msg.week), float(msg.iTOW) / 1000.0 + float(msg.fTOW) * 1e-9)
    if kind in ("NAV-HPPOSLLH", "NAV-RELPOSNED"):
        return ctx.resolve_itow(msg.iTOW)
    if kind in ("RMC", "ZDA"):
        date = getattr(msg, "date", None)
        if kind == "ZDA":
            try:
                date = dt.date(int(msg.year), int(msg.month), int(msg.day))
            except (TypeError, ValueError):
                date = None
        tod = getattr(msg, "time", None)
        if isinstance(date, dt.date):
            ctx.set_date(date, tod if isinstance(tod, dt.time) else None)
    tod = getattr(msg, "time", None)
    if kind in ("RMC", "ZDA", "GGA", "GNS", "GST") and isinstance(tod, dt.time):
        return ctx.resolve_tod(tod)
    return None


def read_log(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc}", fix="check the path and its permissions") from exc
    if raw[:2] == b"\x1f\x8b":
        out = bytearray()
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                while chunk := gz.read(BLOCK):
                    out += chunk
        except (OSError, EOFError, zlib.error):
            pass  # keep what decompressed before the damage (as `agent inspect` does)
        raw = bytes(out)
    return raw


def import_log(
    log_path: Path, out_dir: Path, *, port: str = "gnss", start: float | None = None
) -> ImportResult:
    """Write ``out_dir`` as a one-port capture of ``log_path``; ``start``: UTC of a log without dates."""
    data = read_log(log_path)
    framer = GnssFramer(TIME_TYPES, name=f"import:{port}")
    frames = [*framer.feed(data), *framer.finish()]
    if not frames:
        raise CaptureError(
            f"{log_path}: no UBX or NMEA frame passed its checksum ({len(data)} bytes)",
            fix="pass a raw u-blox receiver log (UBX/NMEA bytes, optionally .gz); RINEX is not one",
        )
    ctx = TimeContext()
    if start is not None:
        # Centre the day window on start + 12 h, so a time of day without date resolves to the first
        # moment at or after --start (within 24 h; RMC/ZDA/NAV-PVT in the log take over when they come).
        begin = dt.datetime.fromtimestamp(start, tz=UTC)
        ctx.date = begin.date()
        ctx.date_tod_s = begin.hour * 3600 + begin.minute * 60 + begin.second + 43200 - 1e-3
    stamped: list[tuple[float | None, Frame]] = [(frame_time(f, ctx), f) for f in frames]
    times = [t for t, _ in stamped if t is not None and math.isfinite(t)]
    if not times:
        if start is None:
            raise CaptureError(
                f"{log_path}: {len(frames)} frames but none carries a receiver date and time",
                fix="pass --start 2024-05-01T00:00:00Z (the log's UTC start) to stamp it",
            )
        times = [start]
    result = ImportResult(out_dir, port, frames=len(frames), bytes_in=len(data))
    result.messages = dict(framer.counters.messages)
    timed = [i for i, (t, _) in enumerate(stamped) if t is not None and math.isfinite(t)]
    result.undated_frames = timed[0] if timed else len(stamped)
    current = times[0]
    groups: list[tuple[float, bytearray]] = []
    for t, frame in stamped:
        if t is not None and math.isfinite(t):
            current = max(current, t)  # never back in time within a capture
        if groups and groups[-1][0] == current:
            groups[-1][1].extend(frame.raw)
        else:
            groups.append((current, bytearray(frame.raw)))
    with CaptureWriter(out_dir) as writer:
        cap = writer.add_port(port, "ubx", device=f"imported:{log_path.name}")
        for t, chunk in groups:
            cap(t, bytes(chunk))
            result.bytes_written += len(chunk)
    result.records = len(groups)
    result.t_first, result.t_last = groups[0][0], groups[-1][0]
    return result
