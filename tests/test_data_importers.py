"""Importers on the real public files (../shared/data) and on deliberately broken copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import SiteSeriesError
from agent.features.site_series import parse_iso, read_site_series, write_site_series
from export.data.lamosano import import_lamosano
from export.data.pbo import import_pbo, read_ghcn_daily, read_pbo_csv
from export.data.three_gorges import import_three_gorges

PBO_HEAD = (
    "PBO Station Position Time Series.\nFormat Version, 1.2.0\nReference Frame, NAM08\n4-character ID, TEST\n"
    "Date, North (mm), East (mm), Vertical (mm), North Std. Deviation (mm), East Std. Deviation (mm), "
    "Vertical Std. Deviation (mm), Quality,\n"
)
RAIN = "DATE\tPRCP\tTMAX\n20200101\t0.5\t40\n20200102\t-9999\t41\n20200103\t0\t39\n20200105\t0.1\t38\n"


def _files(tmp_path: Path, rows: str, head: str = PBO_HEAD, rain: str = RAIN) -> tuple[Path, Path]:
    g, r = tmp_path / "g.csv", tmp_path / "r.txt"
    g.write_text(head + rows)
    r.write_text(rain)
    return g, r


def test_salmon_falls_blkm_import(shared_data: Path, tmp_path: Path) -> None:
    d = shared_data / "salmon-falls-gnss-hydro"
    s = import_pbo(
        d / "gps/BLKM.pbo.nam08.csv",
        d / "water/NOAA_Castleford_daily.txt",
        groundwater_csv=d / "water/well.csv",
    )
    assert s.station == "BLKM" and s.step == "P1D" and not s.synthetic
    assert np.all(np.diff(s.times) == 86400.0)
    # 2017-01-19 PRCP 0.49 in in the NOAA file -> 12.446 mm
    i = int(np.searchsorted(s.times, parse_iso("2017-01-19")))
    assert s.columns["rain_mm"][i] == pytest.approx(0.49 * 25.4)
    # the first PBO epoch (0/0/0 offset row, sigma 6.85/6.1 mm) is gated out, and counted
    assert np.isnan(s.columns["disp_e_mm"][0]) and s.repairs["low_quality_epochs"] >= 1
    # BLKM moves about -162 mm east over the span (SOURCES.md)
    e = s.columns["disp_e_mm"][np.isfinite(s.columns["disp_e_mm"])]
    assert -175 < e[-1] - e[0] < -150
    gw = s.columns["groundwater_m"]
    assert np.isfinite(gw).sum() > 300 and 4.0 < np.nanmedian(gw) < 8.0
    back = read_site_series(write_site_series(s, tmp_path / "blkm.csv"))
    np.testing.assert_allclose(back.columns["disp_e_mm"], s.columns["disp_e_mm"], equal_nan=True, atol=1e-4)
    assert "gap_steps_filled" in back.meta["repairs"]


@pytest.mark.faults
def test_pbo_unsorted_duplicate_gap_and_lowq_repairs(tmp_path: Path) -> None:
    rows = (
        "2020-01-03,3.00, 3.00, 3.00, 2, 2, 6, final,\n"
        "2020-01-01,1.00, 1.00, 1.00, 2, 2, 6, final,\n"
        "2020-01-01,1.00, 1.00, 1.00, 2, 2, 6, final,\n"
        "2020-01-05,5.00, 5.00, 5.00, 9, 9, 20, suppl,\n"
    )
    s = import_pbo(*_files(tmp_path, rows))
    assert len(s) == 5
    assert s.repairs["unsorted_rows"] >= 1
    assert s.repairs["duplicates_dropped"] == 1
    assert s.repairs["gap_steps_filled"] == 2
    assert s.repairs["low_quality_epochs"] == 1
    np.testing.assert_allclose(s.columns["disp_e_mm"], [1, np.nan, 3, np.nan, np.nan], equal_nan=True)
    np.testing.assert_allclose(s.columns["rain_mm"], [12.7, np.nan, 0, np.nan, 2.54], equal_nan=True)
    assert s.repairs["rain_missing_steps"] == 2


@pytest.mark.faults
def test_pbo_conflicting_duplicate_is_an_error(tmp_path: Path) -> None:
    rows = "2020-01-01,1.00, 1.00, 1.00, 2, 2, 6, final,\n2020-01-01,2.00, 1.00, 1.00, 2, 2, 6, final,\n"
    with pytest.raises(SiteSeriesError, match="two different rows"):
        import_pbo(*_files(tmp_path, rows))


@pytest.mark.faults
def test_pbo_metres_are_converted_unknown_units_and_missing_columns_fail(tmp_path: Path) -> None:
    head_m = PBO_HEAD.replace("North (mm), East (mm), Vertical (mm)", "North (m), East (m), Vertical (m)")
    s = import_pbo(*_files(tmp_path, "2020-01-01,0.001, 0.002, 0.003, 2, 2, 6, final,\n", head_m))
    assert s.columns["disp_e_mm"][0] == pytest.approx(2.0) and s.repairs["position_unit_m_to_mm"] == 1
    head_ft = PBO_HEAD.replace("East (mm)", "East (ft)")
    with pytest.raises(SiteSeriesError, match="'ft'"):
        import_pbo(*_files(tmp_path, "2020-01-01,1, 2, 3, 2, 2, 6, final,\n", head_ft))
    head_no_east = "Date, North (mm), Vertical (mm)\n"
    with pytest.raises(SiteSeriesError, match=r"\['east'\]"):
        read_pbo_csv(_files(tmp_path, "2020-01-01,1,3\n", head_no_east)[0])
    with pytest.raises(SiteSeriesError, match="not a UNAVCO/PBO"):
        read_pbo_csv(_files(tmp_path, "", "just,some,csv\n1,2,3\n")[0])
    with pytest.raises(SiteSeriesError, match="not a number"):
        import_pbo(*_files(tmp_path, "2020-01-01,1.0, x, 3, 2, 2, 6, final,\n"))


@pytest.mark.faults
def test_ghcn_missing_values_and_unit_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "r.txt"
    p.write_text(RAIN)
    _t, mm, _ = read_ghcn_daily(p)
    assert np.isnan(mm[1]) and mm[0] == pytest.approx(12.7)
    p.write_text("DATE\tPRCP\n20200101\t25.0\n20200102\t0\n")  # metric values in a PRCP column
    with pytest.raises(SiteSeriesError, match="implausible in inches") as exc:
        read_ghcn_daily(p)
    assert "--rain-units mm" in exc.value.fix
    assert read_ghcn_daily(p, "mm")[1][0] == 25.0
    # the NOAA CDO csv: quoted, a NAME with a comma, ISO dates, empty PRCP when missing
    p.write_text(
        '"STATION","NAME","DATE","PRCP","TMAX"\n'
        '"USC00101551","CASTLEFORD 2 N, ID US","2020-01-01","0.20","40"\n'
        '"USC00101551","CASTLEFORD 2 N, ID US","2020-01-02","","41"\n'
    )
    _t, mm, _ = read_ghcn_daily(p)
    assert mm[0] == pytest.approx(5.08) and np.isnan(mm[1])
    p.write_text("DATE\tTMAX\n20200101\t40\n")
    with pytest.raises(SiteSeriesError, match="PRCP"):
        read_ghcn_daily(p)


def test_three_gorges_point_monthly(shared_data: Path) -> None:
    d = shared_data / "three-gorges-baishuihe-bazimen/derived"
    s = import_three_gorges(d / "gps_monthly_cumulative_displacement.csv", d / "rain_daily.csv", "ZG93")
    assert s.step == "P1M" and s.meta["site"] == "baishuihe"
    assert np.isfinite(s.columns["disp_n_mm"]).sum() >= 55
    # monthly rain sums agree with the uploader's own monthly table for Shazhenxi (baishuihe), 2007-02
    i = int(np.searchsorted(s.times, parse_iso("2007-02-01")))
    assert s.columns["rain_mm"][i] == pytest.approx(97.7, abs=0.2)
    with pytest.raises(SiteSeriesError, match="ZG999"):
        import_three_gorges(d / "gps_monthly_cumulative_displacement.csv", d / "rain_daily.csv", "ZG999")


def test_lamosano_eleven_day(shared_data: Path) -> None:
    d = shared_data / "lamosano-italy"
    s = import_lamosano(d / "H_lamo.csv", d / "rain_hourly.csv")
    assert s.step == "P11D" and len(s) == 162
    assert s.columns["disp_along_mm"][-1] == pytest.approx(-102, abs=5)
    assert np.isnan(s.columns["disp_e_mm"]).all()
    # rain is conserved: the steps hold exactly the hourly rain in (first step, last step]
    total = 0.0
    for line in (d / "rain_hourly.csv").read_text().splitlines()[1:]:
        stamp, mm = line.split(",")
        dd, mo, rest = stamp.split("/")
        t = parse_iso(f"{rest[:4]}-{mo}-{dd}T{rest[5:]}:00Z")
        if s.times[0] < t <= s.times[-1]:
            total += float(mm)
    assert np.nansum(s.columns["rain_mm"]) == pytest.approx(total)
    assert s.repairs.get("rain_missing_steps") == 1  # the first step has no preceding hours


_CELL = st.one_of(st.floats(-1e4, 1e4).map(lambda v: f"{v:.2f}"), st.sampled_from(["", "x", "nan", "-9999"]))
_ROW = st.tuples(st.integers(1, 40), _CELL, _CELL, _CELL, st.sampled_from(["2", "9", "", "x"]))


@pytest.mark.faults
@settings(max_examples=100, deadline=None)
@given(rows=st.lists(_ROW, max_size=25), rain=st.lists(st.tuples(st.integers(1, 40), _CELL), max_size=25))
def test_importer_never_crashes_on_garbage(
    rows: list[tuple[int, str, str, str, str]], rain: list[tuple[int, str]]
) -> None:
    import tempfile

    pbo = "".join(f"2020-01-{d:02d},{n}, {e}, {u}, {sd}, {sd}, 6, final,\n" for d, n, e, u, sd in rows)
    ghcn = "".join(f"202001{d:02d}\t{v}\n" for d, v in rain)
    with tempfile.TemporaryDirectory() as tmp:
        g, r = Path(tmp) / "g.csv", Path(tmp) / "r.txt"
        g.write_text(PBO_HEAD + pbo)
        r.write_text("DATE\tPRCP\n" + ghcn)
        try:
            s = import_pbo(g, r, rain_units="mm")
        except SiteSeriesError:
            return
        assert all(col.shape == s.times.shape for col in s.columns.values())
        assert np.all(np.diff(s.times) == 86400.0)
        rain_mm = s.columns["rain_mm"]
        assert np.all(rain_mm[np.isfinite(rain_mm)] >= 0)  # negative rain: NaN, counted
