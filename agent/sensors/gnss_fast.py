"""Fixed-offset decoding of the four messages a position epoch is made of: UBX NAV-PVT and
NAV-HPPOSLLH (``struct`` at the offsets of the u-blox interface description) and NMEA GGA and RMC
(one ``split``). The values are those pyubx2 / pynmeagps give (same scaling, same rounding: pyubx2
rounds scaled fields to 12 decimals and adds the high-precision parts; pynmeagps converts
``ddmm.mmmm`` with ``round(d + m / 60, 10)``): tests compare every field the agent reads on every
real capture in ../shared/data, value for value.

Anything unusual (another payload length, an unknown talker, a field count or a field text that
does not match the plain forms below) returns None and the caller parses it with the reference
library, so the fast path never guesses. Only the fields :mod:`agent.sensors.gnss_epochs` reads are
decoded.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
from typing import Any

from pynmeagps.nmeatypes_core import NMEA_TALKERS

_PVT = struct.Struct("<IHBBBBBBIiBBBBiiiiII")  # iTOW .. vAcc (48 bytes)
_PVT_LEN = 92
_HPP = struct.Struct("<BHBIiiiibbbbII")  # 36 bytes
_HPP_LEN = 36
SCALROUND = 12  # pyubx2 rounds scaled attributes to 12 decimals
E1_N1, E1_N7, E1_N9 = 1e-1, 1e-7, 1e-9  # pyubx2's resolution constants
_TIME = re.compile(r"\d{6}(?:\.\d{1,6})?\Z")
_DATE = re.compile(r"\d{6}\Z")
_DEC = re.compile(r"-?\d+(?:\.\d*)?\Z")
_INT = re.compile(r"\d+\Z")
_POS = re.compile(r"\d{4,5}\.\d+\Z")
_TALKERS = frozenset(NMEA_TALKERS)
FAST_TYPES = frozenset({"NAV-PVT", "NAV-HPPOSLLH", "GGA", "RMC"})


class FastMessage:
    """The decoded fields as attributes (the names pyubx2 / pynmeagps use)."""

    def __init__(self, identity: str, **fields: Any) -> None:
        self.identity = identity
        self.__dict__.update(fields)


# ---- UBX --------------------------------------------------------------------------------------------
def nav_pvt(payload: bytes) -> FastMessage | None:
    if len(payload) != _PVT_LEN:
        return None
    (itow, year, month, day, hour, minute, second, valid, _tacc, nano, fix_type, flags, _flags2, num_sv,
     lon, lat, height, _hmsl, h_acc, _v_acc) = _PVT.unpack_from(payload)  # fmt: skip
    flags3 = payload[78]
    return FastMessage(
        "NAV-PVT",
        iTOW=itow,
        year=year,
        month=month,
        day=day,
        hour=hour,
        min=minute,
        second=second,
        validDate=valid & 1,
        validTime=(valid >> 1) & 1,
        nano=nano,
        fixType=fix_type,
        gnssFixOk=flags & 1,
        carrSoln=(flags >> 6) & 3,
        numSV=num_sv,
        lon=round(lon * E1_N7, SCALROUND),
        lat=round(lat * E1_N7, SCALROUND),
        height=height,
        hAcc=h_acc,
        invalidLlh=flags3 & 1,
    )


def nav_hpposllh(payload: bytes) -> FastMessage | None:
    if len(payload) != _HPP_LEN:
        return None
    (_version, _res, flags, itow, lon, lat, height, _hmsl, lon_hp, lat_hp, height_hp, _hmsl_hp, h_acc,
     _v_acc) = _HPP.unpack_from(payload)  # fmt: skip
    return FastMessage(
        "NAV-HPPOSLLH",
        invalidLlh=flags & 1,
        iTOW=itow,
        lon=round(round(lon * E1_N7, SCALROUND) + round(lon_hp * E1_N9, SCALROUND), SCALROUND),
        lat=round(round(lat * E1_N7, SCALROUND) + round(lat_hp * E1_N9, SCALROUND), SCALROUND),
        height=round(height + round(height_hp * E1_N1, SCALROUND), SCALROUND),
        hAcc=round(h_acc * E1_N1, SCALROUND),
    )


UBX_DECODERS = {"NAV-PVT": nav_pvt, "NAV-HPPOSLLH": nav_hpposllh}


def parse_ubx(identity: str, frame: bytes) -> FastMessage | None:
    """A whole checksum-valid UBX frame (sync .. checksum) of ``identity``; None: use pyubx2."""
    fn = UBX_DECODERS.get(identity)
    return None if fn is None else fn(frame[6:-2])


# ---- NMEA -------------------------------------------------------------------------------------------
def _time(text: str) -> dt.time | None:
    if not _TIME.match(text):
        return None
    h, m, s = int(text[0:2]), int(text[2:4]), int(text[4:6])
    if h > 23 or m > 59 or s > 59:
        return None
    frac = text[7:]
    return dt.time(h, m, s, int(frac.ljust(6, "0")) if frac else 0)


def _date(text: str) -> dt.date | None:
    if not _DATE.match(text):
        return None
    d, m, y = int(text[0:2]), int(text[2:4]), int(text[4:6])
    try:
        return dt.date(2000 + y if y < 69 else 1900 + y, m, d)  # strptime's %y pivot
    except ValueError:
        return None


def _dec(text: str) -> float | str | None:
    if text == "":
        return ""
    return float(text) if _DEC.match(text) else None


def _int(text: str) -> int | str | None:
    if text == "":
        return ""
    return int(text) if _INT.match(text) else None


def _pos(text: str, hemi: str, negative: str) -> float | str | None:
    if text == "":
        return ""
    if not _POS.match(text):
        return None
    dp = text.find(".")
    value = round(abs(float(text[0 : dp - 2])) + float(text[dp - 2 :]) / 60, 10)
    return -abs(value) if hemi == negative else abs(value)


def _split(raw: bytes) -> tuple[str, list[str]] | None:
    content = raw.decode("ascii").strip("$\r\n").split("*", 1)[0]
    hdr, *fields = content.split(",")
    if hdr[:1] == "P" or hdr[:2] not in _TALKERS:
        return None
    return hdr[2:], fields


def gga(fields: list[str]) -> FastMessage | None:
    if len(fields) != 14:
        return None
    t = _time(fields[0])
    lat, lon = _pos(fields[1], fields[2], "S"), _pos(fields[3], fields[4], "W")
    quality, num_sv = _int(fields[5]), _int(fields[6])
    hdop, alt, sep = _dec(fields[7]), _dec(fields[8]), _dec(fields[10])
    if t is None or None in (lat, lon, quality, num_sv, hdop, alt, sep):
        return None
    return FastMessage(
        "GGA", time=t, lat=lat, lon=lon, quality=quality, numSV=num_sv, HDOP=hdop, alt=alt, sep=sep
    )


def rmc(fields: list[str]) -> FastMessage | None:
    if len(fields) not in (12, 13):
        return None
    t, d = _time(fields[0]), _date(fields[8])
    if t is None or d is None:
        return None
    return FastMessage("RMC", time=t, date=d)


NMEA_DECODERS = {"GGA": gga, "RMC": rmc}


def parse_nmea(raw: bytes) -> FastMessage | None:
    """A checksum-valid NMEA sentence (``$...*hh\\r\\n``) of a type in NMEA_DECODERS; None: use pynmeagps."""
    parts = _split(raw)
    if parts is None:
        return None
    fn = NMEA_DECODERS.get(parts[0])
    return None if fn is None else fn(parts[1])
