"""Site-series CSV reader/writer: round trip, strict errors, counted repairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import SiteSeriesError
from agent.features.site_series import (
    SiteSeries,
    parse_iso,
    read_site_series,
    step_grid,
    to_iso,
    write_site_series,
)

HEADER = "# site: test\n# station: ST1\n# step: P1D\ntime,disp_e_mm,disp_n_mm,disp_u_mm,rain_mm\n"


def _write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    p = tmp_path / "s.csv"
    p.write_text(header + body)
    return p


def test_round_trip_keeps_values_meta_and_nan(tmp_path: Path) -> None:
    t = parse_iso("2020-01-01T00:00:00Z") + 86400.0 * np.arange(5)
    cols = {
        "disp_e_mm": np.array([0.0, 1.5, np.nan, 3.25, 4.0]),
        "disp_n_mm": np.array([0.0, -1.0, np.nan, -3.0, -4.0]),
        "disp_u_mm": np.full(5, np.nan),
        "rain_mm": np.array([0.0, 12.7, 0.0, np.nan, 1.0]),
        "groundwater_m": np.array([1.0, 1.1, 1.2, 1.3, 1.4]),
    }
    s = SiteSeries(t, cols, {"site": "x", "station": "A", "step": "P1D", "synthetic": "true"})
    back = read_site_series(write_site_series(s, tmp_path / "a.csv"))
    assert back.station == "A" and back.synthetic and back.step == "P1D"
    np.testing.assert_array_equal(back.times, t)
    for k, v in cols.items():
        np.testing.assert_allclose(back.columns[k], v, equal_nan=True)
    assert back.repairs == {}


def test_gap_steps_are_filled_with_nan_and_counted(tmp_path: Path) -> None:
    p = _write(tmp_path, "2020-01-01T00:00:00Z,0,0,0,1\n2020-01-04T00:00:00Z,3,0,0,2\n")
    s = read_site_series(p)
    assert len(s) == 4
    assert s.repairs["gap_steps_filled"] == 2
    assert np.isnan(s.columns["disp_e_mm"][1:3]).all()
    assert s.columns["disp_e_mm"][3] == 3.0


@pytest.mark.faults
@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("2020-01-02T00:00:00Z,0,0,0,1\n2020-01-01T00:00:00Z,0,0,0,1\n", "not sorted"),
        ("2020-01-01T00:00:00Z,0,0,0,1\n2020-01-01T00:00:00Z,0,0,0,1\n", "duplicate"),
        ("2020-01-01T00:00:00Z,0,abc,0,1\n", "non-numeric"),
        ("2020-01-01T00:00:00+02:00,0,0,0,1\n", "not UTC"),
        ("2020-01-01T00:00:00Z,0,0,0\n", "cells"),
        ("2020-01-01T06:00:00Z,0,0,0,1\n2020-01-02T00:00:00Z,0,0,0,1\n", "not on the P1D step grid"),
    ],
)
def test_bad_rows_are_clear_errors(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(SiteSeriesError, match=match) as exc:
        read_site_series(_write(tmp_path, body))
    assert exc.value.fix


@pytest.mark.faults
def test_missing_required_column_and_unit_mismatch(tmp_path: Path) -> None:
    with pytest.raises(SiteSeriesError, match="lacks required"):
        read_site_series(
            _write(tmp_path, "2020-01-01T00:00:00Z,0,0,0\n", "time,disp_e_mm,disp_n_mm,disp_u_mm\n")
        )
    with pytest.raises(SiteSeriesError, match="other units") as exc:
        read_site_series(
            _write(
                tmp_path, "2020-01-01T00:00:00Z,0,0,0,0.5\n", "time,disp_e_mm,disp_n_mm,disp_u_mm,rain_in\n"
            )
        )
    assert "rain_mm" in exc.value.fix


@pytest.mark.faults
def test_physically_invalid_values_become_nan_and_are_counted(tmp_path: Path) -> None:
    s = read_site_series(_write(tmp_path, "2020-01-01T00:00:00Z,0,0,0,-3\n2020-01-02T00:00:00Z,0,0,0,inf\n"))
    assert np.isnan(s.columns["rain_mm"]).all()
    assert s.repairs["invalid_values"] == 2


def test_monthly_and_eleven_day_grids() -> None:
    g = step_grid(parse_iso("2020-11-01"), parse_iso("2021-03-01"), "P1M")
    assert [to_iso(float(t))[:10] for t in g] == [
        "2020-11-01",
        "2020-12-01",
        "2021-01-01",
        "2021-02-01",
        "2021-03-01",
    ]
    g11 = step_grid(parse_iso("2020-01-01"), parse_iso("2020-02-01"), "P11D")
    assert np.allclose(np.diff(g11), 11 * 86400.0)
    with pytest.raises(SiteSeriesError, match="duration"):
        step_grid(0.0, 1.0, "daily")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SiteSeriesError, match="not found"):
        read_site_series(tmp_path / "nope.csv")


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(st.floats(-1e5, 1e5, allow_nan=False), st.just(float("nan"))),
        min_size=1,
        max_size=30,
    )
)
def test_round_trip_property(values: list[float]) -> None:
    import tempfile

    n = len(values)
    v = np.asarray(values)
    cols = {"disp_e_mm": v, "disp_n_mm": -v, "disp_u_mm": v * 0.5, "rain_mm": np.abs(v) % 500}
    s = SiteSeries(parse_iso("2020-01-01") + 86400.0 * np.arange(n), cols, {"station": "P", "step": "P1D"})
    with tempfile.TemporaryDirectory() as d:
        back = read_site_series(write_site_series(s, Path(d) / "p.csv"))
    for k, col in cols.items():
        np.testing.assert_allclose(back.columns[k], col, rtol=1e-9, atol=1e-9, equal_nan=True)


@pytest.mark.faults
def test_bom_crlf_accepted_non_utf8_and_duplicate_columns_rejected(tmp_path: Path) -> None:
    p = tmp_path / "bom.csv"
    p.write_bytes(("\ufeff" + HEADER + "2020-01-01T00:00:00Z,0,0,0,1\n").replace("\n", "\r\n").encode())
    assert len(read_site_series(p)) == 1
    p.write_bytes(HEADER.encode() + b"2020-01-01T00:00:00Z,0,0,0,\xff\n")
    with pytest.raises(SiteSeriesError, match="not UTF-8"):
        read_site_series(p)
    p.write_text("time,disp_e_mm,disp_n_mm,disp_u_mm,rain_mm,rain_mm\n2020-01-01T00:00:00Z,0,0,0,1,2\n")
    with pytest.raises(SiteSeriesError, match="more than once"):
        read_site_series(p)
    # a wrong year must not allocate a grid of billions of steps
    p.write_text(
        HEADER.replace("P1D", "PT1H") + "1020-01-01T00:00:00Z,0,0,0,1\n2020-01-01T00:00:00Z,0,0,0,1\n"
    )
    with pytest.raises(SiteSeriesError, match="spans"):
        read_site_series(p)


@pytest.mark.faults
@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="time,disp_enu_mmrain0123456789.-:TZ#\n nan", max_size=300))
def test_reader_never_crashes_on_garbage(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.csv"
        p.write_text(HEADER + text)
        try:
            s = read_site_series(p)
        except SiteSeriesError:
            return
        assert all(col.shape == s.times.shape for col in s.columns.values())
