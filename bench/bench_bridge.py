"""Benchmark: firmware-bridge decode throughput (frames/s, MB/s) and CPU per real-time second.

Run: ``.venv/bin/python bench/bench_bridge.py [--seconds 600] [--repeat 3]``. Single-threaded (the reader
runs in its port's thread); the thread count and CPU count are printed with the results.
"""

from __future__ import annotations

import json
import os
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

import serial
import typer

from firmware_bridge.codec import FrameEncoder
from firmware_bridge.messages import Message, Rain, SampleFormat, Seismic, WireState
from firmware_bridge.reader import FrameDecoder
from firmware_bridge.scenario import RainStep, Scenario, SeismicEvent, WireChange
from firmware_bridge.simulator import generate_frames

app = typer.Typer(add_completion=False)


def _decode_rate(data: bytes, chunk: int, repeat: int) -> tuple[int, float]:
    best = float("inf")
    frames = 0
    for _ in range(repeat):
        decoder = FrameDecoder()
        started = time.perf_counter()
        for i in range(0, len(data), chunk):
            decoder.feed(data[i : i + chunk])
            for _frame in decoder.frames():
                pass
        best = min(best, time.perf_counter() - started)
        frames = decoder.counters.frames_ok
    return frames, best


def _encode_rate(make: Callable[[int], Message], n: int) -> float:
    enc = FrameEncoder(boot_id=1)
    started = time.perf_counter()
    for i in range(n):
        enc.encode(make(i))
    return n / (time.perf_counter() - started)


def _pty_rate(data: bytes, expected: int, bulk: bool) -> float:
    """Frames/s through a real pty and pyserial, reading in bulk or byte by byte."""
    master, slave = os.openpty()
    tty.setraw(slave)
    port = serial.Serial(os.ttyname(slave), 115200, timeout=0.2)

    def write() -> None:
        for i in range(0, len(data), 4096):
            os.write(master, data[i : i + 4096])

    decoder = FrameDecoder()
    writer = threading.Thread(target=write, daemon=True)
    started = time.perf_counter()
    writer.start()
    try:
        while decoder.counters.frames_ok < expected:
            chunk = port.read(port.in_waiting or 1) if bulk else port.read(1)
            if not chunk:
                break
            decoder.feed(chunk)
            for _frame in decoder.frames():
                pass
        return decoder.counters.frames_ok / (time.perf_counter() - started)
    finally:
        writer.join(5)
        port.close()
        os.close(master)
        os.close(slave)


@app.command()
def main(
    seconds: float = 600.0,
    repeat: int = 3,
    chunk: int = 4096,
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures as JSON."),
) -> None:
    """Decode a simulated site stream (100 Hz geophone in 50-sample int32 blocks, rain, wire, heartbeats)."""
    fig: dict[str, float] = {}
    scenario = Scenario(
        duration_s=seconds,
        rain=(RainStep(0, 0), RainStep(60, 30.0)),
        seismic_events=(SeismicEvent(seconds / 2, 10, 8000),),
        wire=(WireChange(seconds / 3, WireState.TRIPPED),),
        seismic_block=50,
        seismic_format=SampleFormat.INT32,
    )
    data = b"".join(b for _, b in generate_frames(scenario))
    frames, elapsed = _decode_rate(data, chunk, repeat)
    fig["site_stream_frames_per_s"] = round(frames / elapsed)
    fig["site_stream_MB_per_s"] = round(len(data) / elapsed / 1e6, 2)
    fig["cpu_fraction_of_real_time_pct"] = round(100 * elapsed / seconds, 3)
    typer.echo(f"threads: {threading.active_count()} (decoder is single-threaded); cpus: {os.cpu_count()}")
    typer.echo(f"site stream: {seconds:.0f} s simulated, {frames} frames, {len(data) / 1e6:.2f} MB")
    typer.echo(
        f"decode: {frames / elapsed:,.0f} frames/s, {len(data) / elapsed / 1e6:.2f} MB/s "
        f"(best of {repeat}, {chunk}-byte reads)"
    )
    typer.echo(
        f"CPU per real-time second of this stream: {elapsed / seconds * 1e3:.2f} ms ({elapsed / seconds:.2%})"
    )

    rain = FrameEncoder(boot_id=2)
    rain_data = b"".join(rain.encode(Rain(i, i, 0)) for i in range(50_000))
    n, t = _decode_rate(rain_data, chunk, repeat)
    typer.echo(f"decode RAIN only: {n / t:,.0f} frames/s")
    fig["rain_frames_per_s"] = round(n / t)
    seis = FrameEncoder(boot_id=3)
    block = tuple(range(-25, 25))
    seis_data = b"".join(
        seis.encode(Seismic(i * 50, 0, 100, 1, SampleFormat.INT32, block)) for i in range(10_000)
    )
    n, t = _decode_rate(seis_data, chunk, repeat)
    typer.echo(f"decode SEISMIC (50 x int32): {n / t:,.0f} frames/s = {n * 50 / t:,.0f} samples/s")
    fig["seismic_samples_per_s"] = round(n * 50 / t)
    rate = _encode_rate(lambda i: Rain(i, i, 0), 50_000)
    typer.echo(f"encode RAIN: {rate:,.0f} frames/s")
    pty_data = rain_data[: len(rain_data) // 10]
    n_pty = 5_000
    bulk = _pty_rate(pty_data, n_pty, bulk=True)
    single = _pty_rate(pty_data, n_pty, bulk=False)
    typer.echo(
        f"pty + pyserial, RAIN frames: read(in_waiting) {bulk:,.0f} frames/s, read(1) {single:,.0f} frames/s"
    )
    fig["pty_bulk_frames_per_s"] = round(bulk)
    fig["pty_single_frames_per_s"] = round(single)
    if json_out is not None:
        json_out.write_text(json.dumps(fig) + "\n", encoding="utf-8")


if __name__ == "__main__":
    app()
