"""The report over real data: the Salmon Falls BLKM GNSS station and NOAA Castleford rain (2017-2018),
stored as daily steps in a real SQLite store (as a replay of daily data leaves it).

Data: ../shared/data/salmon-falls-gnss-hydro (SOURCES.md: UNAVCO/PBO daily positions, NOAA GHCN-Daily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config import StatePaths
from agent.features.aggregate import COLUMNS, DAY_S, StepTable
from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.report.cli import write_report
from agent.report.data import load_report_data


def _blkm_store(shared_data: Path, tmp_path: Path) -> tuple[StatePaths, np.ndarray, dict[str, np.ndarray]]:
    from export.data.pbo import import_pbo

    d = shared_data / "salmon-falls-gnss-hydro"
    series = import_pbo(d / "gps/BLKM.pbo.nam08.csv", d / "water/NOAA_Castleford_daily.txt")
    n = series.times.size
    table = StepTable(step_s=DAY_S, times=series.times.astype(np.float64))
    for col in COLUMNS:
        vals = series.columns.get(col, np.full(n, np.nan))
        table.values[col] = np.asarray(vals, dtype=np.float64)
        table.counts[col] = np.isfinite(table.values[col]).astype(np.int64)
        table.completeness[col] = np.isfinite(table.values[col]).astype(np.float64)
    store_path = tmp_path / "store.sqlite"
    with Store(StoreConfig(path=store_path)) as store:
        store.put_steps(table)
        store.flush()
    state = tmp_path / "state"
    state.mkdir()
    return StatePaths(state, store_path), series.times, series.columns


def test_report_of_real_blkm_gnss_and_rain(shared_data: Path, tmp_path: Path) -> None:
    paths, times, cols = _blkm_store(shared_data, tmp_path)
    data = load_report_data(paths, 120)
    # No raw samples, no status: the window ends with the newest stored day.
    assert data.end == pytest.approx(times[-1] + DAY_S)
    assert data.daily is not None and data.levels_derived and not data.history.levels
    sel = times >= data.start
    np.testing.assert_allclose(data.daily.values["disp_e_mm"], cols["disp_e_mm"][sel], equal_nan=True)
    assert np.nansum(data.daily.values["rain_mm"]) == pytest.approx(np.nansum(cols["rain_mm"][sel]))
    out = write_report(paths, 1000, tmp_path / "report")
    assert set(out) == {"levels", "displacement", "rain", "seismic", "html"}
    full = load_report_data(paths, 1000)
    e = full.daily.values["disp_e_mm"] if full.daily is not None else np.zeros(0)
    e = e[np.isfinite(e)]
    assert -175 < e[-1] - e[0] < -150  # BLKM moves about -162 mm east over the span (SOURCES.md)
    assert (tmp_path / "report" / "displacement.png").stat().st_size > 30_000
