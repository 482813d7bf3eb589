"""Seismic STA/LTA trigger and PGV against obspy on the real Unterhaching recordings (obspy: tests only)."""

from __future__ import annotations

import csv
import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from agent.compat import UTC
from agent.errors import ConfigError
from agent.sensors.dsp import sosfilt
from agent.sensors.seismic import SeismicConfig, SeismicProcessor, band_sos, recursive_sta_lta, trigger_onsets

obspy = pytest.importorskip("obspy")
from obspy.signal.trigger import recursive_sta_lta as obspy_recursive_sta_lta  # noqa: E402
from obspy.signal.trigger import trigger_onset as obspy_trigger_onset  # noqa: E402

SEIS = "obspy-seismic-samples"
STATIONS = ("BW.UH1..SHZ", "BW.UH2..SHZ", "BW.UH3..SHZ", "BW.UH4..EHZ")
# obspy's coincidence-trigger test settings (expected_coincidence_triggers.csv header)
OBSPY_TEST = {"band_hz": (10.0, 20.0), "sta_s": 0.5, "lta_s": 10.0, "thr_on": 3.5, "thr_off": 1.0}


def _trace(shared_data: Path, station: str) -> tuple[float, float, np.ndarray]:
    tr = obspy.read(str(shared_data / SEIS / "derived_mseed" / f"{station}.2010-05-27.mseed"))[0]
    return tr.stats.starttime.timestamp, float(tr.stats.sampling_rate), tr.data.astype(np.float64)


def _cfg(**kw: object) -> SeismicConfig:
    params: dict[str, object] = {"sensitivity_counts_per_m_s": 1.0e6, **OBSPY_TEST, "pgv_band_hz": None}
    params.update(kw)
    return SeismicConfig(**params)  # type: ignore[arg-type]


def _stream(proc: SeismicProcessor, t0: float, rate: float, x: np.ndarray, seed: int, max_block: int = 300):
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        k = int(rng.integers(1, max_block))
        out += proc.feed(t0 + i / rate, i, rate, 1.0, x[i : i + k])
        i += k
    return out + proc.finish()


@pytest.mark.parametrize("station", STATIONS)
def test_seismic_filter_and_cf_match_obspy(shared_data: Path, station: str) -> None:
    _, rate, x = _trace(shared_data, station)
    tr = obspy.Trace(x.copy(), header={"sampling_rate": rate})
    tr.filter("bandpass", freqmin=10.0, freqmax=20.0)  # obspy: 4 corners, causal
    y, _ = sosfilt(band_sos((10.0, 20.0), rate, 4), x)  # numpy (agent.sensors.dsp), not scipy
    np.testing.assert_allclose(y, tr.data, rtol=1e-12, atol=1e-9 * np.abs(tr.data).max())
    nsta, nlta = int(0.5 * rate), int(10.0 * rate)
    ref = obspy_recursive_sta_lta(tr.data, nsta, nlta)
    mine = recursive_sta_lta(y, nsta, nlta)
    np.testing.assert_allclose(mine, ref, rtol=1e-10, atol=1e-12)
    assert (mine[:nlta] == 0).all() and mine.max() > 3.5


@pytest.mark.parametrize("station", STATIONS)
def test_seismic_streaming_events_equal_obspy_trigger_onset(shared_data: Path, station: str) -> None:
    t0, rate, x = _trace(shared_data, station)
    tr = obspy.Trace(x.copy(), header={"sampling_rate": rate})
    tr.filter("bandpass", freqmin=10.0, freqmax=20.0)
    cf = obspy_recursive_sta_lta(tr.data, int(0.5 * rate), int(10.0 * rate))
    expected = [tuple(map(int, ev)) for ev in obspy_trigger_onset(cf, 3.5, 1.0)]
    assert trigger_onsets(cf, 3.5, 1.0) == expected
    proc = SeismicProcessor(_cfg())
    samples = _stream(proc, t0, rate, x, seed=hash(station) % 1000)
    got = [(e.index_on, e.index_off) for e in proc.events]
    assert got == expected and len(expected) >= 3
    ons = [s for s in samples if s.channel == "seismic.trigger" and s.value == 1.0]
    offs = [s for s in samples if s.channel == "seismic.trigger" and s.value == 0.0]
    assert [s.t for s in ons] == pytest.approx([t0 + on / rate for on, _ in expected])
    assert [s.t for s in offs] == pytest.approx([t0 + off / rate for _, off in expected])
    assert proc.counters["events"] == len(expected) and proc.counters["samples"] == len(x)


def test_seismic_network_coincidence_finds_obspys_three_events(shared_data: Path) -> None:
    """>= 3 of 4 stations triggered together inside each window obspy's test asserts (CSV)."""
    triggers: dict[str, list[tuple[float, float]]] = {}
    for station in STATIONS:
        t0, rate, x = _trace(shared_data, station)
        proc = SeismicProcessor(_cfg())
        proc.feed(t0, 0, rate, 1.0, x)
        proc.finish()
        triggers[station] = [(e.t_on, e.t_off) for e in proc.events]
    path = shared_data / SEIS / "derived_mseed" / "expected_coincidence_triggers.csv"
    rows = list(csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#")))
    assert len(rows) == 3
    for row in rows:
        lo = dt.datetime.fromisoformat(row["time_min_utc"]).replace(tzinfo=UTC).timestamp()
        hi = dt.datetime.fromisoformat(row["time_max_utc"]).replace(tzinfo=UTC).timestamp()
        onsets = [on for st in STATIONS for on, _ in triggers[st] if lo - 2 <= on <= hi]
        stations = {st for st in STATIONS for on, _ in triggers[st] if lo - 2 <= on <= hi}
        assert len(stations) >= int(row["coincidence_sum"]) - 1 >= 2
        assert lo - 2 <= min(onsets) <= hi
        assert {s.split(".")[1] for s in stations} >= set(row["stations"].split(";")[: len(stations) - 1])


def test_seismic_block_sizes_do_not_change_output(shared_data: Path) -> None:
    t0, rate, x = _trace(shared_data, "BW.UH4..EHZ")
    cfg = _cfg(pgv_band_hz=(0.5, 40.0), pgv_window_s=5.0, min_duration_s=1.0)
    one = SeismicProcessor(cfg)
    a = one.feed(t0, 0, rate, 1.0, x) + one.finish()
    many = SeismicProcessor(cfg)
    b = _stream(many, t0, rate, x, seed=4, max_block=50)
    assert len(a) == len(b) and len(a) > 40
    # within one feed() call trigger samples come before PGV samples: compare per channel and time
    a.sort(key=lambda s: (s.channel, s.t))
    b.sort(key=lambda s: (s.channel, s.t))
    for sa, sb in zip(a, b, strict=True):
        assert (sa.channel, sa.t) == (sb.channel, pytest.approx(sb.t, abs=1e-6))
        assert sa.value == pytest.approx(sb.value, rel=1e-9)
    # the numpy filter sums each block in another order: floats agree to rounding, indices exactly
    assert [(e.index_on, e.index_off, e.t_on, e.t_off) for e in one.events] == [
        (e.index_on, e.index_off, e.t_on, e.t_off) for e in many.events
    ]
    for ea, eb in zip(one.events, many.events, strict=True):
        assert (ea.peak_cf, ea.pgv_mm_s) == (
            pytest.approx(eb.peak_cf, rel=1e-9),
            pytest.approx(eb.pgv_mm_s, rel=1e-9),
        )
    assert one.counters["pgv_windows"] == sum(s.channel == "seismic.pgv_mm_s" for s in a)


@pytest.mark.faults
def test_seismic_gap_resets_filters_and_warmup(shared_data: Path) -> None:
    t0, rate, x = _trace(shared_data, "BW.UH1..SHZ")
    proc = SeismicProcessor(_cfg())
    cut = 5000
    missing = 400
    out = proc.feed(t0, 0, rate, 1.0, x[:cut])
    out += proc.feed(t0 + (cut + missing) / rate, cut + missing, rate, 1.0, x[cut + missing :])
    out += proc.finish()
    assert proc.counters["gaps"] == 1 and proc.counters["missing_samples"] == missing
    nlta = int(10.0 * rate)
    # no trigger inside the warm-up after the gap; events before the gap are those of the whole trace
    restart = cut + missing
    assert not [e for e in proc.events if restart <= e.index_on < restart + nlta]
    whole = SeismicProcessor(_cfg())
    whole.feed(t0, 0, rate, 1.0, x)
    whole.finish()
    assert [e for e in proc.events if e.index_off < cut] == [e for e in whole.events if e.index_off < cut]
    # the later events are found again after the warm-up
    assert [e.index_on for e in proc.events if e.index_on > restart + nlta] == [
        e.index_on for e in whole.events if e.index_on > restart + nlta
    ]


@pytest.mark.faults
def test_seismic_bad_duplicate_and_overlapping_blocks_are_counted() -> None:
    cfg = SeismicConfig(sensitivity_counts_per_m_s=1000.0, band_hz=(1.0, 20.0))
    proc = SeismicProcessor(cfg)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 100, 1000)
    assert proc.feed(0.0, 0, 100.0, 1.0, x[:500]) != []
    assert proc.feed(0.0, 0, 100.0, 1.0, x[:500]) == []  # the same block again
    proc.feed(4.0, 400, 100.0, 1.0, x[400:700])  # 100 samples overlap
    assert proc.feed(7.0, 700, 100.0, 0.0, x[700:800]) == []  # gain 0
    assert proc.feed(7.0, 700, 100.0, 1.0, np.array([1.0, np.nan])) == []
    assert proc.counters["duplicate_blocks"] == 1 and proc.counters["overlap_samples"] == 100
    assert proc.counters["bad_blocks"] == 2 and proc.counters["samples"] == 700
    proc.feed(7.0, 700, 50.0, 1.0, x[700:800])  # rate change: new segment
    assert proc.counters["gaps"] == 1


def test_seismic_pgv_of_known_sine_and_min_duration() -> None:
    rate, sens, gain = 100.0, 2.0e5, 4.0  # counts per m/s, preamp gain
    t = np.arange(0, 60.0, 1 / rate)
    burst = (t > 25) & (t < 45)
    v_m_s = np.where(burst, 0.002 * np.sin(2 * np.pi * 5.0 * t), 1e-6 * np.sin(2 * np.pi * 3 * t))
    counts = np.round(v_m_s * sens * gain)
    cfg = SeismicConfig(
        sens, band_hz=(1.0, 20.0), pgv_band_hz=(0.5, 40.0), pgv_window_s=10.0, min_duration_s=0.5
    )
    proc = SeismicProcessor(cfg)
    out = proc.feed(1000.0, 0, rate, gain, counts) + proc.finish()
    pgv = {s.t: s.value for s in out if s.channel == "seismic.pgv_mm_s"}
    assert sorted(pgv) == [1000.0 + 10 * k for k in range(6)]
    assert pgv[1030.0] == pytest.approx(2.0, rel=0.03)  # steady 2 mm/s sine in the pass band
    assert pgv[1020.0] > 2.0  # the onset rings above it (causal Butterworth)
    assert pgv[1010.0] < 0.01
    assert proc.counters["events"] >= 1 and proc.events[0].t_on == pytest.approx(1025.0, abs=0.2)
    # a minimum duration longer than the 20 s burst suppresses the event and counts it
    strict = SeismicProcessor(SeismicConfig(sens, band_hz=(1.0, 20.0), min_duration_s=30.0))
    out2 = strict.feed(1000.0, 0, rate, gain, counts) + strict.finish()
    assert not [s for s in out2 if s.channel == "seismic.trigger"]
    assert strict.counters["short_events"] >= 1 and strict.counters["events"] == 0


def test_seismic_config_errors() -> None:
    with pytest.raises(ConfigError, match="sensitivity"):
        SeismicConfig(sensitivity_counts_per_m_s=0.0)
    with pytest.raises(ConfigError, match="thr_on"):
        SeismicConfig(1.0, thr_on=1.0, thr_off=2.0)
    with pytest.raises(ConfigError, match="Nyquist"):
        band_sos((30.0, 40.0), 50.0, 4)
    assert math.isfinite(float(band_sos((1.0, 60.0), 100.0, 4).sum()))  # high >= Nyquist: high-pass
