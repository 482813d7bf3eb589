"""Benchmark (not a test): GNSS parse throughput and ingestion CPU per real-time second.

Run: ``.venv/bin/python bench/bench_gnss.py [--seconds 600] [--json OUT]``. Everything runs in ONE
thread (the serial-port thread's job); the numbers are messages/s of pyubx2 / pynmeagps parsing
behind our framer, reading bytes in bulk, plus a pyserial pseudo-terminal comparison of bulk reads
(``read(in_waiting)``) against byte-by-byte reads. Data: the real gpsd ZED-F9P logs in
../shared/data/gnss-receiver-logs and SYNTHETIC simulator streams (labelled as such).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import typer

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.sensors.gnss import GnssConfig, GnssProcessor, Reference  # noqa: E402
from agent.sensors.gnss_frames import GnssFramer  # noqa: E402
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate  # noqa: E402
from agent.sensors.seismic import SeismicConfig, SeismicProcessor  # noqa: E402

log = logging.getLogger("bench_gnss")
LOGS = Path(os.environ.get("LEWS_SHARED_DATA", REPO.parent / "shared" / "data")) / "gnss-receiver-logs"
REF = Reference(46.05, 14.50, 420.0)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    w0, c0 = time.perf_counter(), _cpu()
    n = fn()
    return n, time.perf_counter() - w0, _cpu() - c0


def bench_framer(name: str, data: bytes, parse_all: bool) -> dict[str, Any]:
    def run() -> int:
        framer = GnssFramer(None if parse_all else frozenset())
        n = 0
        for i in range(0, len(data), 4096):  # bulk reads of 4 KiB, as from in_waiting
            n += len(framer.feed(data[i : i + 4096]))
        return n + len(framer.finish())

    n, wall, cpu = _timed(run)
    return {
        "stream": name,
        "parse": "full" if parse_all else "header only",
        "messages": n,
        "MB": len(data) / 1e6,
        "msgs_per_s": n / wall,
        "msgs_per_cpu_s": n / max(cpu, 1e-9),
        "MB_per_s": len(data) / 1e6 / wall,
        "cpu_s": cpu,
    }


def bench_pty(lines: bytes, bulk: bool) -> dict[str, Any]:
    """NMEA lines through a pseudo-terminal, read by pyserial in bulk or byte by byte."""
    import serial

    master, slave = os.openpty()
    port = serial.Serial(os.ttyname(slave), timeout=0.2)

    def write() -> None:
        view = memoryview(lines)
        while view:
            view = view[os.write(master, view[:4096]) :]

    writer = threading.Thread(target=write)
    framer = GnssFramer()  # parse everything
    got = 0
    w0, c0 = time.perf_counter(), _cpu()
    writer.start()
    try:
        received = 0
        while received < len(lines):
            data = port.read(max(1, port.in_waiting)) if bulk else port.read(1)
            if not data:
                break
            received += len(data)
            got += len(framer.feed(data))
    finally:
        writer.join(5)
        port.close()
        os.close(master)
        os.close(slave)
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    return {
        "read": "bulk in_waiting" if bulk else "byte by byte",
        "messages": got,
        "msgs_per_s": got / wall,
        "msgs_per_cpu_s": got / max(cpu, 1e-9),
        "cpu_s": cpu,
    }


def bench_realtime(seconds: int) -> dict[str, Any]:
    """CPU per real-time second: 10 Hz GNSS (NAV-PVT + HPPOSLLH + GGA/RMC) + 100 Hz seismic in 1-s blocks."""
    traj = Trajectory((0.0, float(seconds)), (0.0, 10.0), (0.0, -5.0), (0.0, 2.0))
    epochs = list(simulate(SimConfig(REF, traj, rate_hz=10.0, duration_s=float(seconds), seed=1)))
    per_s = [b"".join(e.data for e in epochs[k * 10 : (k + 1) * 10]) for k in range(seconds)]
    rng = np.random.default_rng(0)
    counts = rng.normal(0, 200, (seconds, 100)).round()
    gnss = GnssProcessor(GnssConfig(REF))
    seis = SeismicProcessor(SeismicConfig(sensitivity_counts_per_m_s=3.0e5))
    t0 = 1_767_225_600.0
    w0, c0 = time.perf_counter(), _cpu()
    n = 0
    for k in range(seconds):
        n += len(gnss.feed(per_s[k]))
        n += len(seis.feed(t0 + k, k * 100, 100.0, 1.0, counts[k]))
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    return {
        "seconds_of_data": seconds,
        "samples_out": n,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_realtime_s": 1000 * cpu / seconds,
        "gnss_epochs_gated": gnss.epochs_gated,
    }


def main(
    seconds: int = typer.Option(600, help="seconds of synthetic data for the real-time CPU figure"),
    json_out: Path | None = typer.Option(None, "--json", help="write results here"),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    nmea = (LOGS / "gpsd_regress/ublox-zed-f9p-nmea.log").read_bytes() * 20
    mixed = (LOGS / "gpsd_regress/ublox-zed-f9p_hpg1.11.log").read_bytes()
    traj = Trajectory((0.0, 600.0), (0.0, 5.0), (0.0, 0.0), (0.0, 0.0))
    sim_ubx = b"".join(
        e.data
        for e in simulate(SimConfig(REF, traj, rate_hz=10, duration_s=600, emit=("NAV-PVT", "NAV-HPPOSLLH")))
    )
    results: dict[str, Any] = {
        "threads": 1,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "framer": [
            bench_framer("real NMEA (zed-f9p-nmea x20)", nmea, True),
            bench_framer("SYNTHETIC UBX NAV-PVT+HPPOSLLH", sim_ubx, True),
            bench_framer("real mixed UBX+NMEA (hpg1.11)", mixed, True),
            bench_framer("real mixed UBX+NMEA (hpg1.11)", mixed, False),
        ],
        "pty": [bench_pty(nmea[:200_000], True), bench_pty(nmea[:200_000], False)],
        "realtime": bench_realtime(seconds),
    }
    for row in results["framer"] + results["pty"]:
        log.info("%s", {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
    log.info("%s", {k: round(v, 3) if isinstance(v, float) else v for k, v in results["realtime"].items()})
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    typer.run(main)
