"""The GGA and RMC fields the epoch assembler reads, for every such line of a stream at once.

Each line must have the plain form :mod:`agent.sensors.gnss_fast` decodes (one regular expression per
sentence, the same field forms, matched once per distinct character-class sequence; the talker is
checked against ``TALKERS`` by the caller, on the distinct headers); then the live path gets the same
values from it. A line that does not
match raises :class:`Unsupported` (the live path would hand it to pynmeagps).
"""

from __future__ import annotations

import re

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from agent.errors import Unsupported
from agent.sensors.gnss_fast import _TALKERS

TALKERS = frozenset(t for t in _TALKERS if len(t) == 2 and not t.startswith("P"))  # gnss_fast._split
_TIME = rb"(\d{6}(?:\.\d{1,6})?)"
_ANY = rb"[^,*\r\n]*"
_POS = rb"(?:\d{4,5}\.\d+)?"
_INT = rb"\d*"
_DEC = rb"(?:-?\d+(?:\.\d*)?)?"
_END = rb"\*[0-9A-Fa-f]{2}\r?\n"
GGA_LINE = re.compile(
    rb"\$[A-Z0-9]{2}GGA," + _TIME + rb"," + rb",".join(
        (_POS, _ANY, _POS, _ANY, _INT, _INT, _DEC, _DEC, _ANY, _DEC, _ANY, _ANY, _ANY)
    ) + _END
)  # fmt: skip
RMC_LINE = re.compile(
    rb"\$[A-Z0-9]{2}RMC," + _TIME + rb",(" + _ANY + rb")," + rb",".join([_ANY] * 6)
    + rb",(\d{6})," + _ANY + rb"," + _ANY + rb"," + _ANY + rb"(?:," + _ANY + rb")?" + _END
)  # fmt: skip
US_PER_DAY = 86_400_000_000
_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


# Character classes the two patterns tell apart: digit, '.', '-', ',', '*', CR, LF, '$', A-F, a-f, G-Z, other.
_CLASS = np.full(256, 11, dtype=np.uint8)
for _code, _chars in enumerate(
    (b"0123456789", b".", b"-", b",", b"*", b"\r", b"\n", b"$", b"ABCDEF", b"abcdef")
):
    _CLASS[np.frombuffer(_chars, dtype=np.uint8)] = _code
_CLASS[ord("G") : ord("Z") + 1] = 10
_CLASS_TABLE = _CLASS.tobytes()  # for bytes.translate: a C loop, ~10x numpy's fancy indexing


_MIX = np.random.default_rng(0).integers(1, 2**63, 64, dtype=np.uint64) | np.uint64(1)  # odd


def _alike(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows (uint8, n x L): (first row of each group, group of each row), as
    ``np.unique(..., return_index=True, return_inverse=True)`` on the rows, by a 64-bit hash of each
    row; a collision is found by comparing every row with its group's first and falls back to that."""
    n, length = rows.shape
    words = np.zeros((n, -(-length // 8) * 8), dtype=np.uint8)
    words[:, :length] = rows
    w = words.view(np.uint64)
    mix = _MIX[np.arange(w.shape[1]) % len(_MIX)]
    h = (w * mix).sum(axis=1, dtype=np.uint64)  # wraps: arithmetic mod 2**64
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if not np.array_equal(rows, rows[first[inverse]]):
        _, first, inverse = np.unique(rows.view(f"V{length}").ravel(), return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _plain(pattern: re.Pattern[bytes], text: bytes, starts: np.ndarray, ends: np.ndarray) -> list[np.ndarray]:
    """The capture groups of ``pattern`` in each line ``text[start:end]`` (one bytes array per group);
    Unsupported unless every line matches it whole. Lines alike class by class (``_CLASS``: all the
    pattern tells apart) match alike, so one ``fullmatch`` per distinct class sequence decides for
    all of them and gives the groups' places."""
    b = np.frombuffer(text, dtype=np.uint8)
    cls = np.frombuffer(text.translate(_CLASS_TABLE), dtype=np.uint8)
    out = [np.zeros(len(starts), dtype="S16") for _ in range(pattern.groups)]
    lengths = ends - starts
    for length in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == length)
        rows = sliding_window_view(cls, length)[starts[sel]]
        first, inverse = _alike(rows)
        chars = sliding_window_view(b, length)[starts[sel]]
        for k, rep in enumerate(first.tolist()):
            at = int(starts[sel[rep]])
            m = pattern.fullmatch(text, at, at + length)
            if m is None:
                raise Unsupported(f"a line not in the plain form: {text[at : at + length]!r}")
            members = inverse.ravel() == k
            for g in range(pattern.groups):
                lo, hi = m.span(g + 1)
                if hi > lo:
                    field = np.ascontiguousarray(chars[members, lo - at : hi - at])
                    out[g][sel[members]] = field.view(f"S{hi - lo}").ravel()
    return out


def time_of_day_us(texts: list[bytes] | np.ndarray) -> np.ndarray:
    """``hhmmss[.f]`` -> microseconds of the day, as ``gnss_fast._time`` (fraction padded to 6)."""
    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    arr = np.asarray(texts, dtype="S13")
    c = arr.view(np.uint8).reshape(len(texts), 13).astype(np.int64) - 48
    hh, mm, ss = c[:, 0] * 10 + c[:, 1], c[:, 2] * 10 + c[:, 3], c[:, 4] * 10 + c[:, 5]
    if np.any(hh > 23) or np.any(mm > 59) or np.any(ss > 59):
        raise Unsupported("an NMEA time of day out of range")
    frac = np.zeros(len(texts), dtype=np.int64)
    for j in range(6):
        digit = c[:, 7 + j]
        frac = frac * 10 + np.where((digit >= 0) & (digit <= 9), digit, 0)
    return ((hh * 60 + mm) * 60 + ss) * 1_000_000 + frac


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm), vectorised."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def valid_date(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    mdays = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(m - 1, 0, 11)] + (
        leap & (m == 2)
    )
    return (m >= 1) & (m <= 12) & (d >= 1) & (d <= mdays)


def gga_times(text: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Time of day (us) of each GGA line ``text[start:end]``."""
    return time_of_day_us(_plain(GGA_LINE, text, starts, ends)[0])


def rmc_fields(
    text: bytes, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(day number since 1970, time of day in us, status is 'A') of each RMC line ``text[start:end]``."""
    times, status, dates = _plain(RMC_LINE, text, starts, ends)
    tod = time_of_day_us(times)
    if not len(times):
        return np.zeros(0, dtype=np.int64), tod, np.zeros(0, dtype=bool)
    c = np.asarray(dates, dtype="S6").view(np.uint8).reshape(-1, 6).astype(np.int64) - 48
    d, m, y = c[:, 0] * 10 + c[:, 1], c[:, 2] * 10 + c[:, 3], c[:, 4] * 10 + c[:, 5]
    y = np.where(y < 69, 2000 + y, 1900 + y)  # strptime's %y pivot, as gnss_fast._date
    if not np.all(valid_date(y, m, d)):
        raise Unsupported("an RMC date that is not a date")
    return days_from_civil(y, m, d), tod, status == b"A"
