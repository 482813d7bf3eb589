"""From parsed UBX / NMEA messages to one position epoch per receiver epoch.

Sources of a position (ranked by ``GnssConfig.sources``): UBX NAV-PVT, UBX NAV-RELPOSNED, NMEA GGA,
NMEA GNS, and legacy UBX NAV-SOL (ECEF, GPS week time). Helpers that only fill fields:
UBX NAV-HPPOSLLH (replaces NAV-PVT's 1e-7 deg / 1 mm position by its 1e-9 deg / 0.1 mm one),
NMEA GST (horizontal accuracy), RMC / ZDA / NAV-TIMEUTC (date for NMEA time-of-day).
Messages with the same UTC time (10 ms) form one epoch. NAV-RELPOSNED has only iTOW, mapped to
UTC by the latest NAV-PVT's iTOW -> UTC offset.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agent.compat import UTC

NAN = math.nan
CARRIER_NONE, CARRIER_FLOAT, CARRIER_FIXED = 0, 1, 2
CARRIER_NAMES = {"none": CARRIER_NONE, "float": CARRIER_FLOAT, "fixed": CARRIER_FIXED}

# NMEA GGA quality indicator -> (UBX-like fixType, carrier solution). 6 = dead reckoning.
GGA_QUALITY: dict[int, tuple[int, int]] = {
    0: (0, CARRIER_NONE),
    1: (3, CARRIER_NONE),
    2: (3, CARRIER_NONE),
    3: (3, CARRIER_NONE),
    4: (3, CARRIER_FIXED),
    5: (3, CARRIER_FLOAT),
    6: (1, CARRIER_NONE),
    7: (0, CARRIER_NONE),
    8: (0, CARRIER_NONE),
}
# NMEA GNS posMode character (one per constellation) -> (fixType, carrier). The best one wins.
GNS_MODE: dict[str, tuple[int, int]] = {
    "N": (0, CARRIER_NONE),
    "A": (3, CARRIER_NONE),
    "D": (3, CARRIER_NONE),
    "P": (3, CARRIER_NONE),
    "R": (3, CARRIER_FIXED),
    "F": (3, CARRIER_FLOAT),
    "E": (1, CARRIER_NONE),
    "M": (0, CARRIER_NONE),
    "S": (0, CARRIER_NONE),
}
GPS_EPOCH = dt.datetime(1980, 1, 6, tzinfo=UTC)
# GPS - UTC in seconds from each date on (IERS bulletins); used to date NAV-SOL (GPS week + iTOW).
_LEAP_DATES = (
    "1981-07-01 1982-07-01 1983-07-01 1985-07-01 1988-01-01 1990-01-01 1991-01-01 1992-07-01 1993-07-01 "
    "1994-07-01 1996-01-01 1997-07-01 1999-01-01 2006-01-01 2009-01-01 2012-07-01 2015-07-01 2017-01-01"
)
LEAP_SECONDS: tuple[tuple[dt.date, int], ...] = tuple(
    (dt.date.fromisoformat(d), k + 1) for k, d in enumerate(_LEAP_DATES.split())
)
WEEK_S = 604800.0
MAX_UNDATED = 200  # NMEA epochs held while waiting for a date (RMC/ZDA); more are counted as dropped


@dataclass(frozen=True, slots=True)
class Epoch:
    """One receiver epoch, before gating. NaN where a field is unknown."""

    t: float
    source: str  # "NAV-PVT" | "NAV-RELPOSNED" | "GGA" | "GNS"
    fix_type: int = 0
    carrier: int = CARRIER_NONE
    fix_ok: bool = False
    num_sv: float = NAN
    h_acc_mm: float = NAN
    hdop: float = NAN
    lat: float = NAN  # degrees
    lon: float = NAN
    h_m: float = NAN  # ellipsoidal height, m
    rel_enu_mm: tuple[float, float, float] | None = None  # NAV-RELPOSNED: rover - base, mm
    relpos_valid: bool = True


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return NAN
    return out if math.isfinite(out) else NAN


def _utc(date: dt.date, tod: dt.time) -> float:
    return dt.datetime.combine(date, tod, tzinfo=UTC).timestamp()


def _tod_s(tod: dt.time) -> float:
    return tod.hour * 3600 + tod.minute * 60 + tod.second + tod.microsecond * 1e-6


@dataclass
class TimeContext:
    """Date for NMEA time-of-day and iTOW -> UTC offset for NAV-RELPOSNED, learnt from the stream."""

    date: dt.date | None = None
    date_tod_s: float = 0.0  # time of day of the message that gave ``date``
    itow_offset_s: float | None = None  # UTC seconds - iTOW seconds (from NAV-PVT)
    clock: Callable[[], float] | None = None  # host clock fallback for NMEA without RMC/ZDA
    utc_fix: float | None = None  # the last full UTC time the receiver flagged valid (clock.py)

    def set_date(self, date: dt.date, tod: dt.time | None, *, valid: bool = False) -> None:
        self.date = date
        self.date_tod_s = _tod_s(tod) if tod is not None else 0.0
        if valid and tod is not None:
            self.utc_fix = _utc(date, tod)

    def resolve_tod(self, tod: dt.time) -> float | None:
        """UTC epoch seconds of an NMEA time of day, choosing the day nearest the date context."""
        date = self.date
        ref_tod = self.date_tod_s
        if date is None:
            if self.clock is None:
                return None
            now = dt.datetime.fromtimestamp(self.clock(), tz=UTC)
            date, ref_tod = now.date(), _tod_s(now.time())
        diff = _tod_s(tod) - ref_tod
        if diff > 43200:
            date = date - dt.timedelta(days=1)
        elif diff < -43200:
            date = date + dt.timedelta(days=1)
        return _utc(date, tod)

    def resolve_itow(self, itow_ms: float) -> float | None:
        if self.itow_offset_s is None:
            return None
        return float(itow_ms) / 1000.0 + self.itow_offset_s


def _ubx_pvt_time(msg: Any) -> float | None:
    if not (getattr(msg, "validDate", False) and getattr(msg, "validTime", False)):
        return None
    try:
        base = dt.datetime(msg.year, msg.month, msg.day, msg.hour, msg.min, msg.second, tzinfo=UTC)
    except (TypeError, ValueError):
        return None
    return base.timestamp() + float(msg.nano) * 1e-9


def epoch_from_nav_pvt(msg: Any, ctx: TimeContext) -> Epoch | None:
    t = _ubx_pvt_time(msg)
    if t is None:
        return None
    ctx.itow_offset_s = t - float(msg.iTOW) / 1000.0
    utc = dt.datetime.fromtimestamp(t, tz=UTC)
    ctx.set_date(utc.date(), utc.time(), valid=True)
    return Epoch(
        t=t,
        source="NAV-PVT",
        fix_type=int(msg.fixType),
        carrier=int(msg.carrSoln),
        fix_ok=bool(msg.gnssFixOk) and not bool(getattr(msg, "invalidLlh", False)),
        num_sv=_num(msg.numSV),
        h_acc_mm=_num(msg.hAcc),
        lat=_num(msg.lat),
        lon=_num(msg.lon),
        h_m=_num(msg.height) / 1000.0,
    )


def epoch_from_relposned(msg: Any, ctx: TimeContext) -> Epoch | None:
    t = ctx.resolve_itow(msg.iTOW)
    if t is None:
        return None
    # pyubx2 folds the 0.1 mm high-precision parts into relPosN/E/D (cm) and scales acc* to mm.
    n_mm, e_mm, d_mm = (_num(msg.relPosN) * 10.0, _num(msg.relPosE) * 10.0, _num(msg.relPosD) * 10.0)
    return Epoch(
        t=t,
        source="NAV-RELPOSNED",
        fix_type=3 if msg.gnssFixOK else 0,
        carrier=int(msg.carrSoln),
        fix_ok=bool(msg.gnssFixOK),
        h_acc_mm=math.hypot(_num(msg.accN), _num(msg.accE)),
        rel_enu_mm=(e_mm, n_mm, -d_mm),
        relpos_valid=bool(msg.relPosValid),
    )


def hp_from_hpposllh(msg: Any, ctx: TimeContext) -> tuple[float, tuple[float, float, float, float]] | None:
    """(t, (lat, lon, h_m, h_acc_mm)) of a valid NAV-HPPOSLLH; pyubx2 folds the HP parts in."""
    t = ctx.resolve_itow(msg.iTOW)
    if t is None or getattr(msg, "invalidLlh", False):
        return None
    return t, (_num(msg.lat), _num(msg.lon), _num(msg.height) / 1000.0, _num(msg.hAcc))


def gps_to_utc(week: int, tow_s: float) -> float:
    """UTC epoch seconds of a GPS week and time of week (leap seconds from LEAP_SECONDS)."""
    gps = GPS_EPOCH + dt.timedelta(weeks=week, seconds=tow_s)
    leap = 0
    for since, value in LEAP_SECONDS:
        if (gps - dt.timedelta(seconds=value)).date() >= since:
            leap = value
    return (gps - dt.timedelta(seconds=leap)).timestamp()


def epoch_from_nav_sol(msg: Any) -> Epoch | None:
    """Legacy NAV-SOL (u-blox 6/7/8): ECEF position in cm, pAcc (3D, cm) taken as h_acc."""
    if not (getattr(msg, "wknSet", False) and getattr(msg, "towSet", False)):
        return None
    import pymap3d  # the ECEF -> geodetic conversion

    t = gps_to_utc(int(msg.week), float(msg.iTOW) / 1000.0 + float(msg.fTOW) * 1e-9)
    lat, lon, h = pymap3d.ecef2geodetic(
        _num(msg.ecefX) / 100.0, _num(msg.ecefY) / 100.0, _num(msg.ecefZ) / 100.0
    )
    return Epoch(
        t=t,
        source="NAV-SOL",
        fix_type=int(msg.gpsFix),
        carrier=CARRIER_NONE,  # NAV-SOL has no carrier-solution field
        fix_ok=bool(msg.gpsfixOK),
        num_sv=_num(msg.numSV),
        h_acc_mm=_num(msg.pAcc) * 10.0,
        lat=float(lat),
        lon=float(lon),
        h_m=float(h),
    )


def _nmea_epoch(msg: Any, t: float, source: str, fix: tuple[int, int]) -> Epoch:
    """An epoch from the fields GGA and GNS share; ``fix`` is (fix type, carrier) from the sentence."""
    fix_type, carrier = fix
    sep = _num(msg.sep)
    return Epoch(
        t=t,
        source=source,
        fix_type=fix_type,
        carrier=carrier,
        fix_ok=fix_type > 0,
        num_sv=_num(msg.numSV),
        hdop=_num(msg.HDOP),
        lat=_num(msg.lat),
        lon=_num(msg.lon),
        h_m=_num(msg.alt) + (0.0 if math.isnan(sep) else sep),
    )


def epoch_from_gga(msg: Any, t: float) -> Epoch:
    quality = int(_num(msg.quality)) if not math.isnan(_num(msg.quality)) else 0
    return _nmea_epoch(msg, t, "GGA", GGA_QUALITY.get(quality, (0, CARRIER_NONE)))


def epoch_from_gns(msg: Any, t: float) -> Epoch:
    modes = [GNS_MODE.get(c, (0, CARRIER_NONE)) for c in str(msg.posMode or "N")]
    return _nmea_epoch(msg, t, "GNS", max(modes, key=lambda fc: (fc[1], fc[0])))


@dataclass
class EpochAssembler:
    """Groups position candidates and helpers by epoch time; hands out finished epochs in time order."""

    sources: tuple[str, ...]
    ctx: TimeContext = field(default_factory=TimeContext)
    drops: Counter[str] = field(default_factory=Counter)
    _key: int | None = None
    _cands: dict[str, Epoch] = field(default_factory=dict)
    _h_acc: float = NAN
    _hp: tuple[float, float, float, float] | None = None
    _last_key: int | None = None
    _undated: list[Any] = field(default_factory=list)

    def add_message(self, identity: str, msg: Any) -> list[Epoch]:
        """Feed one parsed message; returns the epochs completed by it."""
        kind = identity if "-" in identity else identity[2:]
        if kind == "NAV-PVT":
            return self._add(epoch_from_nav_pvt(msg, self.ctx), "NAV-PVT")
        if kind == "NAV-RELPOSNED":
            return self._add(epoch_from_relposned(msg, self.ctx), "NAV-RELPOSNED")
        if kind == "NAV-SOL":
            return self._add(epoch_from_nav_sol(msg), "NAV-SOL")
        if kind == "NAV-HPPOSLLH":
            hp = hp_from_hpposllh(msg, self.ctx)
            if hp is not None:
                out = self._advance(hp[0])
                if round(hp[0] * 100) == self._key:
                    self._hp = hp[1]
                return out
            return []
        if kind == "NAV-TIMEUTC" and getattr(msg, "validUTC", False):
            try:
                d = dt.date(msg.year, msg.month, msg.day)
            except (TypeError, ValueError):
                return []
            self.ctx.set_date(d, dt.time(msg.hour, msg.min, msg.sec), valid=True)
            return self._release_undated()
        if kind == "RMC" and isinstance(getattr(msg, "date", None), dt.date):
            tod = msg.time if isinstance(msg.time, dt.time) else None
            self.ctx.set_date(msg.date, tod, valid=getattr(msg, "status", "") == "A")
            return self._release_undated()
        if kind == "ZDA":
            try:
                d = dt.date(int(msg.year), int(msg.month), int(msg.day))
            except (TypeError, ValueError):
                return []
            self.ctx.set_date(d, msg.time if isinstance(msg.time, dt.time) else None)
            return self._release_undated()
        if kind in ("GGA", "GNS", "GST"):
            if not isinstance(getattr(msg, "time", None), dt.time):
                self.drops["no_time"] += 1
                return []
            if self.ctx.date is None and self.ctx.clock is None:
                if len(self._undated) >= MAX_UNDATED:
                    self.drops["no_date"] += 1
                    return []
                self._undated.append((kind, msg))
                return []
            return self._add_nmea(kind, msg)
        return []

    def _add_nmea(self, kind: str, msg: Any) -> list[Epoch]:
        t = self.ctx.resolve_tod(msg.time)
        if t is None:
            self.drops["no_date"] += 1
            return []
        if kind == "GST":
            out = self._advance(t)
            std_lat, std_lon = _num(msg.stdLat), _num(msg.stdLong)
            self._h_acc = math.hypot(std_lat, std_lon) * 1000.0
            return out
        epoch = epoch_from_gga(msg, t) if kind == "GGA" else epoch_from_gns(msg, t)
        return self._add(epoch, kind)

    def _release_undated(self) -> list[Epoch]:
        out: list[Epoch] = []
        pending, self._undated = self._undated, []
        for kind, msg in pending:
            out.extend(self._add_nmea(kind, msg))
        return out

    def _advance(self, t: float) -> list[Epoch]:
        key = round(t * 100)
        if key == self._key:
            return []
        if self._last_key is not None and key <= self._last_key:
            self.drops["stale"] += 1
            return []
        out = self.flush()
        self._key = key
        return out

    def _add(self, epoch: Epoch | None, kind: str) -> list[Epoch]:
        if epoch is None:
            if kind in self.sources:
                self.drops["no_time"] += 1
            return []
        if kind not in self.sources:
            return self._advance_keep(epoch)
        out = self._advance(epoch.t)
        if round(epoch.t * 100) == self._key:
            self._cands[kind] = epoch
        return out

    def _advance_keep(self, epoch: Epoch) -> list[Epoch]:
        # not a selected source, but it may still fill num_sv for another one (NAV-PVT -> RELPOSNED)
        out = self._advance(epoch.t)
        if round(epoch.t * 100) == self._key:
            self._cands.setdefault("_aux", epoch)
        return out

    def flush(self) -> list[Epoch]:
        """Finish the current epoch (call at end of stream); returns it if it has a position source."""
        if self._key is None:
            return []
        cands, self._cands = self._cands, {}
        h_acc, self._h_acc = self._h_acc, NAN
        hp, self._hp = self._hp, None
        self._last_key, self._key = self._key, None
        best = next((cands[s] for s in self.sources if s in cands), None)
        if best is None:
            return []
        aux = [c for c in cands.values() if c is not best]
        num_sv = best.num_sv
        if math.isnan(num_sv):
            num_sv = next((c.num_sv for c in aux if not math.isnan(c.num_sv)), NAN)
        best_h_acc = best.h_acc_mm if not math.isnan(best.h_acc_mm) else h_acc
        if best.source == "NAV-PVT" and hp is not None and all(map(math.isfinite, hp)):
            return [replace(best, num_sv=num_sv, lat=hp[0], lon=hp[1], h_m=hp[2], h_acc_mm=hp[3])]
        return [replace(best, num_sv=num_sv, h_acc_mm=best_h_acc)]

    def finish(self) -> list[Epoch]:
        out: list[Epoch] = []
        if self._undated:
            self.drops["no_date"] += len(self._undated)
            self._undated = []
        out.extend(self.flush())
        return out
