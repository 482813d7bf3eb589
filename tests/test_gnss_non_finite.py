"""Checksum-valid GNSS frames with absurd numbers never yield +-inf samples: the decoder drops the
epoch and counts it (``rejected.non_finite``) before the store or any subscriber sees it."""

from __future__ import annotations

import datetime as dt
import math

from pynmeagps import GET, NMEAMessage

from agent.compat import UTC
from agent.sensors.gnss import GnssConfig, GnssProcessor, Reference

UTC_T = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _frames(alt: float, second: int = 0) -> bytes:
    t = (UTC_T + dt.timedelta(seconds=second)).time()
    rmc = NMEAMessage(
        "GN", "RMC", GET, time=t, status="A", lat=46.0, lon=11.0, date=UTC_T.date(), posMode="R",
        navStatus="V",
    )  # fmt: skip
    gga = NMEAMessage(
        "GN", "GGA", GET, time=t, lat=46.0, lon=11.0, quality=4, numSV=20, HDOP=0.8, alt=alt,
        altUnit="M", sep=0.0, sepUnit="M",
    )  # fmt: skip
    return bytes(rmc.serialize()) + bytes(gga.serialize())


def test_a_height_that_overflows_to_inf_is_dropped_and_counted_at_the_decoder() -> None:
    proc = GnssProcessor(GnssConfig(reference=Reference(46.0, 11.0, 100.0)), keep_epochs=True)
    data = _frames(100.0, 0) + _frames(1e306, 1) + _frames(-1e306, 2) + _frames(100.5, 3)
    samples = proc.feed(data) + proc.finish()
    assert all(math.isfinite(s.value) for s in samples)
    u = [s.value for s in samples if s.channel == "gnss.u_mm"]
    assert len(u) == 2 and u[0] == 0.0 and abs(u[1] - 500.0) < 1e-3  # the garbage between them gone
    counters = proc.counters()
    assert counters["rejected"]["non_finite"] == 2
    assert [e.reason for e in proc.epochs] == [None, "non_finite", "non_finite", None]
