"""The numpy filters of agent.sensors.dsp against scipy (the reference they replace; a test dependency)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.sensors.dsp import BLOCK, SosFilter, butter_sos, first_order_sos, sosfilt

signal = pytest.importorskip("scipy.signal")

RATES = (20.0, 50.0, 100.0, 200.0, 250.0)
BANDS = ((1.0, 20.0), (0.5, 40.0), (10.0, 20.0), (0.1, 49.0), (5.0, 6.0), (2.0, 120.0))


@pytest.mark.parametrize("order", range(1, 11))
def test_butter_sos_is_scipys(order: int) -> None:
    """Every order 1..10 the config allows, band-pass and high-pass: the same coefficients, bit for bit."""
    checked = 0
    for rate in RATES:
        nyq = rate / 2
        for lo_hz, hi_hz in BANDS:
            lo, hi = lo_hz / nyq, hi_hz / nyq
            if lo >= 1:
                continue
            if hi >= 1:
                ref, mine = (
                    signal.butter(order, lo, btype="highpass", output="sos"),
                    butter_sos(order, lo, "highpass"),
                )
            else:
                ref = signal.butter(order, [lo, hi], btype="bandpass", output="sos")
                mine = butter_sos(order, (lo, hi), "bandpass")
            assert mine.shape == ref.shape
            np.testing.assert_array_equal(mine, ref)
            checked += 1
    assert checked >= 25
    lp = signal.butter(order, 0.3, btype="lowpass", output="sos")
    np.testing.assert_allclose(butter_sos(order, 0.3, "lowpass"), lp, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("n", [1, 7, BLOCK - 1, BLOCK, BLOCK + 1, 5 * BLOCK + 3, 100_001])
def test_sosfilt_matches_scipy_sample_for_sample(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(scale=1e3, size=n) + 50.0  # an offset: the high-pass part of the band matters
    sos = butter_sos(4, (0.5 / 50, 40 / 50), "bandpass")
    zi = rng.normal(size=(sos.shape[0], 2))
    y, zf = sosfilt(sos, x, zi)
    yr, zr = signal.sosfilt(sos, x, zi=zi)
    scale = max(1.0, float(np.abs(yr).max(initial=0.0)))
    np.testing.assert_allclose(y, yr, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(zf, zr, rtol=0, atol=1e-11 * scale)


def test_empty_input_keeps_the_state() -> None:
    sos = butter_sos(4, (0.1, 0.4), "bandpass")
    zi = np.arange(8.0).reshape(4, 2)
    y, zf = sosfilt(sos, np.zeros(0), zi)
    assert y.shape == (0,)
    np.testing.assert_array_equal(zf, zi)


def test_streaming_in_random_blocks_matches_one_scipy_call() -> None:
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=30_000))  # a random walk: large low-frequency content
    sos = butter_sos(6, (1 / 50, 20 / 50), "bandpass")
    f, parts, i = SosFilter(sos), [], 0
    while i < len(x):
        k = int(rng.integers(1, 400))
        parts.append(f.filter(x[i : i + k]))
        i += k
    yr = signal.sosfilt(sos, x)
    np.testing.assert_allclose(np.concatenate(parts), yr, rtol=0, atol=1e-11 * np.abs(yr).max())


@pytest.mark.parametrize("c", [1 / 50, 1 / 1000, 1 / 5000])
def test_first_order_is_scipys_lfilter(c: float) -> None:
    """The STA/LTA recursion y = c x + (1 - c) y[-1], with a carried state, as scipy.signal.lfilter."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=20_000) ** 2
    prev = 3.7
    y, zf = sosfilt(first_order_sos(c), x, np.array([[(1 - c) * prev, 0.0]]))
    yr, zr = signal.lfilter([c], [1.0, c - 1.0], x, zi=[(1 - c) * prev])
    np.testing.assert_allclose(y, yr, rtol=1e-12)
    assert zf[0, 0] == pytest.approx(zr[0], rel=1e-12) and zf[0, 1] == 0.0


def test_daemon_modules_do_not_import_scipy() -> None:
    """The seismic path (and the daemon that imports it) runs without scipy: checked in a fresh process."""
    import subprocess
    import sys

    code = "import sys, agent.sensors.seismic, agent.daemon; print('scipy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr
