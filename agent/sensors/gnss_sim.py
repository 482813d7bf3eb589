"""SYNTHETIC GNSS receiver: UBX NAV-PVT (+ NAV-RELPOSNED) and NMEA GGA + RMC for a moving antenna.

The antenna follows a displacement trajectory (e/n/u mm at given times, linear in between) around a
reference position, with Gaussian noise, a data-driven fix-quality schedule and random dropouts.
Messages are built with pyubx2 / pynmeagps (``UBXMessage`` / ``NMEAMessage``), so the bytes are what
a u-blox receiver would send. ``write_to_fd`` puts them on a pseudo-terminal master in real time or
time-compressed; the reader opens the slave with pyserial.
``python -m agent.sensors.gnss_sim SCENARIO.json --speed 10`` runs a scenario (``sim_config_from_mapping``)
on a new pty and prints its path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import time
import tty
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pymap3d
import typer
from pynmeagps import NMEAMessage
from pyubx2 import GET, UBXMessage

from agent.compat import UTC
from agent.errors import ConfigError
from agent.sensors.gnss import Reference
from agent.sensors.gnss_epochs import CARRIER_FIXED, CARRIER_FLOAT, CARRIER_NONE, GPS_EPOCH

log = logging.getLogger(__name__)
LEAP_S = 18  # GPS - UTC (since 2017)
EMITTABLE = ("NAV-PVT", "NAV-HPPOSLLH", "NAV-RELPOSNED", "GGA", "GNS")
# carrier solution -> NMEA GGA quality indicator
GGA_QUALITY_OF = {CARRIER_NONE: 1, CARRIER_FLOAT: 5, CARRIER_FIXED: 4}


@dataclass(frozen=True)
class Trajectory:
    """Displacement of the antenna: times (s from start) and e/n/u mm, linearly interpolated."""

    t_s: tuple[float, ...]
    e_mm: tuple[float, ...]
    n_mm: tuple[float, ...]
    u_mm: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.t_s)
        if n == 0 or any(len(x) != n for x in (self.e_mm, self.n_mm, self.u_mm)):
            raise ConfigError("gnss trajectory needs equal-length, non-empty t/e/n/u", fix="check the lists")
        if any(b <= a for a, b in zip(self.t_s, self.t_s[1:], strict=False)):
            raise ConfigError("gnss trajectory times must increase", fix="sort t_s")

    def at(self, t: float | np.ndarray) -> np.ndarray:
        """e/n/u mm at time(s) t (s from start); shape (3,) or (3, N)."""
        return np.array([np.interp(t, self.t_s, axis) for axis in (self.e_mm, self.n_mm, self.u_mm)])


@dataclass(frozen=True)
class QualitySegment:
    """From ``t_from_s`` on, the receiver reports this quality (until the next segment)."""

    t_from_s: float
    carrier: int = CARRIER_FIXED
    fix_type: int = 3
    num_sv: int = 20
    h_acc_mm: float = 10.0


@dataclass(frozen=True)
class SimConfig:
    reference: Reference
    trajectory: Trajectory
    start_utc: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    rate_hz: float = 1.0
    duration_s: float = 60.0
    noise_mm: tuple[float, float, float] = (3.0, 3.0, 6.0)  # 1-sigma e, n, u
    quality: tuple[QualitySegment, ...] = (QualitySegment(0.0),)
    dropout_prob: float = 0.0  # an epoch sends nothing
    corrupt_prob: float = 0.0  # one byte of an epoch's bytes is flipped (checksum must catch it)
    emit: tuple[str, ...] = ("NAV-PVT", "NAV-HPPOSLLH", "GGA")  # any of EMITTABLE (GGA/GNS come with RMC)
    relpos_origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # reference seen from the base
    seed: int = 0


@dataclass
class SimEpoch:
    """What the simulator intended for one epoch (ground truth for tests)."""

    t: float
    true_enu_mm: np.ndarray
    noisy_enu_mm: np.ndarray
    quality: QualitySegment
    dropped: bool
    corrupted: bool
    data: bytes = field(repr=False, default=b"")


def _scaled(value: float, res: float) -> float:
    """A value that pyubx2's ``int(value / res)`` truncation turns into round(value / res)."""
    k = round(value / res)
    return (k + (0.5 if k >= 0 else -0.5)) * res


def quality_at(segments: Sequence[QualitySegment], t_s: float) -> QualitySegment:
    current = segments[0]
    for seg in segments:
        if seg.t_from_s <= t_s:
            current = seg
    return current


def _nav_pvt(t: float, lat: float, lon: float, h_m: float, q: QualitySegment) -> bytes:
    utc = dt.datetime.fromtimestamp(t, tz=UTC)
    itow = _itow(t)
    whole = utc.replace(microsecond=0)
    msg = UBXMessage(
        "NAV", "NAV-PVT", GET,
        iTOW=itow, year=whole.year, month=whole.month, day=whole.day, hour=whole.hour, min=whole.minute,
        second=whole.second, nano=utc.microsecond * 1000, validDate=1, validTime=1, fullyResolved=1,
        fixType=q.fix_type, gnssFixOk=1 if q.fix_type in (3, 4) else 0, carrSoln=q.carrier,
        numSV=q.num_sv, lat=_scaled(lat, 1e-7), lon=_scaled(lon, 1e-7), height=round(h_m * 1000),
        hMSL=round(h_m * 1000), hAcc=round(q.h_acc_mm), vAcc=round(2 * q.h_acc_mm),
    )  # fmt: skip
    return bytes(msg.serialize())


def _itow(t: float) -> int:
    utc = dt.datetime.fromtimestamp(t, tz=UTC)
    return round((((utc - GPS_EPOCH).total_seconds() + LEAP_S) % 604800) * 1000)


def _hpposllh(t: float, lat: float, lon: float, h_m: float, q: QualitySegment) -> bytes:
    fields: dict[str, float | int] = {}
    for name, value, res in (("lat", lat, 1e-7), ("lon", lon, 1e-7)):
        nano = round(value * 1e9)  # 1e-9 deg units
        std = int(nano / 100)  # toward zero; the high-precision byte holds the rest (-99..99)
        fields[name] = _scaled(std * res, res)
        fields[f"_HP{name}"] = _scaled((nano - std * 100) * 1e-9, 1e-9)
    tenth = round(h_m * 10000)  # 0.1 mm
    mm = int(tenth / 10)
    msg = UBXMessage(
        "NAV", "NAV-HPPOSLLH", GET, iTOW=_itow(t), height=mm, hMSL=mm,
        _HPheight=_scaled((tenth - mm * 10) * 0.1, 0.1), _HPhMSL=_scaled((tenth - mm * 10) * 0.1, 0.1),
        hAcc=_scaled(q.h_acc_mm, 0.1), vAcc=_scaled(2 * q.h_acc_mm, 0.1), **fields,
    )  # fmt: skip
    return bytes(msg.serialize())


def _relposned(t: float, rel_enu_mm: np.ndarray, q: QualitySegment) -> bytes:
    itow = _itow(t)
    parts: dict[str, float | int] = {}
    for axis, mm in zip(("N", "E", "D"), (rel_enu_mm[1], rel_enu_mm[0], -rel_enu_mm[2]), strict=True):
        tenth = round(mm * 10)  # 0.1 mm units
        cm = int(tenth / 100)  # toward zero, as the receiver splits it
        parts[f"relPos{axis}"] = cm
        parts[f"_HPrelPos{axis}"] = _scaled((tenth - cm * 100) * 0.01, 0.01)
    acc = _scaled(q.h_acc_mm / math.sqrt(2), 0.1)
    acc_d = _scaled(2 * q.h_acc_mm, 0.1)
    msg = UBXMessage(
        "NAV", "NAV-RELPOSNED", GET, version=1, iTOW=itow, accN=acc, accE=acc, accD=acc_d,
        gnssFixOK=1 if q.fix_type in (3, 4) else 0, diffSoln=1, relPosValid=1 if q.fix_type in (3, 4) else 0,
        carrSoln=q.carrier, **parts,
    )  # fmt: skip
    return bytes(msg.serialize())


def _nmea(kind: str, t: float, lat: float, lon: float, h_m: float, q: QualitySegment) -> bytes:
    """RMC (the date) followed by GGA or GNS."""
    utc = dt.datetime.fromtimestamp(t, tz=UTC)
    quality = GGA_QUALITY_OF.get(q.carrier, 1) if q.fix_type in (3, 4) else 0
    rmc = NMEAMessage(
        "GN", "RMC", GET, time=utc.time(), status="A" if quality else "V", lat=lat, lon=lon,
        date=utc.date(), posMode="R" if quality == 4 else "F" if quality == 5 else "A", navStatus="V",
        hpnmeamode=True,
    )  # fmt: skip
    # altitude is MSL; with sep = 0 it equals the ellipsoidal height (what the reader reconstructs)
    if kind == "GNS":
        mode = {4: "R", 5: "F", 1: "A"}.get(quality, "N")
        gns = NMEAMessage(
            "GN", "GNS", GET, time=utc.time(), lat=lat, lon=lon, posMode=mode * 3 + "N", numSV=q.num_sv,
            HDOP=0.8 if quality else 99.99, alt=round(h_m, 4), sep=0.0, hpnmeamode=True,
        )  # fmt: skip
        return bytes(rmc.serialize()) + bytes(gns.serialize())
    gga = NMEAMessage(
        "GN", "GGA", GET, time=utc.time(), lat=lat, lon=lon, quality=quality, numSV=q.num_sv,
        HDOP=0.8 if quality else 99.99, alt=round(h_m, 4), altUnit="M", sep=0.0, sepUnit="M",
        hpnmeamode=True,
    )  # fmt: skip
    return bytes(rmc.serialize()) + bytes(gga.serialize())


def simulate(cfg: SimConfig) -> Iterator[SimEpoch]:
    """Yield one SimEpoch per receiver epoch, with the bytes the receiver sends for it."""
    if cfg.rate_hz <= 0 or cfg.duration_s <= 0:
        raise ConfigError("gnss simulator rate_hz and duration_s must be positive", fix="e.g. 1 Hz, 60 s")
    unknown = set(cfg.emit) - set(EMITTABLE)
    if unknown:
        raise ConfigError(f"gnss simulator cannot emit {sorted(unknown)}", fix=f"use some of {EMITTABLE}")
    rng = np.random.default_rng(cfg.seed)
    ref = cfg.reference
    n_epochs = round(cfg.duration_s * cfg.rate_hz)
    for k in range(n_epochs):
        ts = k / cfg.rate_hz
        t = cfg.start_utc + ts
        true = cfg.trajectory.at(ts)
        noisy = true + rng.normal(0.0, 1.0, 3) * np.asarray(cfg.noise_mm)
        q = quality_at(cfg.quality, ts)
        dropped = bool(rng.random() < cfg.dropout_prob)
        corrupted = bool(rng.random() < cfg.corrupt_prob)
        lat, lon, h = pymap3d.enu2geodetic(
            noisy[0] / 1000, noisy[1] / 1000, noisy[2] / 1000, ref.lat, ref.lon, ref.h_m
        )
        chunks: list[bytes] = []
        for kind in cfg.emit:
            if kind == "NAV-PVT":
                chunks.append(_nav_pvt(t, float(lat), float(lon), float(h), q))
            elif kind == "NAV-HPPOSLLH":
                chunks.append(_hpposllh(t, float(lat), float(lon), float(h), q))
            elif kind == "NAV-RELPOSNED":
                chunks.append(_relposned(t, noisy + np.asarray(cfg.relpos_origin_mm), q))
            else:
                chunks.append(_nmea(kind, t, float(lat), float(lon), float(h), q))
        data = b"" if dropped else b"".join(chunks)
        if corrupted and data:
            buf = bytearray(data)
            i = int(rng.integers(len(buf)))
            buf[i] ^= 0x5A
            data = bytes(buf)
        yield SimEpoch(t, true, noisy, q, dropped, corrupted, data)


def write_to_fd(fd: int, cfg: SimConfig, *, speed: float = 1.0) -> list[SimEpoch]:
    """Write the simulated stream to ``fd`` (a pty master) at ``speed`` x real time (inf: no pacing)."""
    t0 = time.monotonic()
    epochs: list[SimEpoch] = []
    for ep in simulate(cfg):
        if math.isfinite(speed):
            due = t0 + (ep.t - cfg.start_utc) / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        view = memoryview(ep.data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        epochs.append(ep)
    return epochs


def sim_config_from_mapping(data: dict[str, Any]) -> SimConfig:
    """SimConfig from plain data (JSON): {"reference": {lat, lon, h_m}, "trajectory": {t_s, e_mm, n_mm,
    u_mm}, "quality": [{t_from_s, carrier, fix_type, num_sv, h_acc_mm}], ...other SimConfig fields}."""
    try:
        d = dict(data)
        ref = Reference(**d.pop("reference"))
        traj = Trajectory(**{k: tuple(float(x) for x in v) for k, v in d.pop("trajectory").items()})
        quality = tuple(QualitySegment(**q) for q in d.pop("quality", [{"t_from_s": 0.0}]))
        for key in ("noise_mm", "emit", "relpos_origin_mm"):
            if key in d:
                d[key] = tuple(d[key])
        return SimConfig(reference=ref, trajectory=traj, quality=quality, **d)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"gnss simulator scenario is malformed: {exc}",
            fix="give reference {lat, lon, h_m} and trajectory {t_s, e_mm, n_mm, u_mm}; see docs/sensors.md",
        ) from exc


def main(scenario: Path, speed: float = 1.0, linger_s: float = 2.0) -> None:
    """Run a scenario on a new pseudo-terminal; prints the device path for the agent's gnss port."""
    cfg = sim_config_from_mapping(json.loads(scenario.read_text()))
    master, slave = os.openpty()
    tty.setraw(slave)  # bytes pass unchanged even before the reader opens the port
    typer.echo(os.ttyname(slave))
    try:
        epochs = write_to_fd(master, cfg, speed=speed)
        log.info("gnss simulator: %d epochs sent", len(epochs))
        time.sleep(linger_s)  # let the reader drain the pty before it goes away
    finally:
        os.close(master)
        os.close(slave)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    typer.run(main)
