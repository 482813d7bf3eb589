"""Rain-catalogue importers and the day table: layouts, predictors, and refusals naming file and line.

Real data: the Cubatão daily gauge and landslide list (../shared/data/cubatao-rain-landslides) and the
NOAA GHCN-Daily export of Salmon Falls. Small hand-written catalogues check the predictor arithmetic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.errors import RainCatalogueError
from export.rain.landslides import read_landslides
from export.rain.series import read_rain
from export.rain.table import build_table, read_table, write_table


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _daily_csv(path: Path, mm: list[float], start: str = "2020-01-01") -> Path:
    days = np.datetime64(start) + np.arange(len(mm))
    return _write(path, "time,mm\n" + "".join(f"{d},{v}\n" for d, v in zip(days, mm, strict=True)))


def test_daily_long_csv_predictors_with_and_without_the_current_day(tmp_path: Path) -> None:
    mm = [float(i) for i in range(1, 21)]  # 1, 2, ..., 20 mm on 20 days
    rain = _daily_csv(tmp_path / "rain.csv", mm)
    ls = _write(tmp_path / "ls.csv", "date,place\n2020-01-18,a\n18/01/2020,b\n2020-01-19,c\n")
    series = read_rain(rain)
    assert series.kind == "daily" and series.layout == "long"
    assert "daily record detected" in series.notes[0]
    table = build_table(series, read_landslides(ls), str(ls))
    i = 17  # 2020-01-18: 18 mm that day
    p = table.predictors
    assert p["rain_1d"][i] == 18 and p["ante_1d"][i] == 17
    assert p["rain_3d"][i] == 16 + 17 + 18 and p["ante_3d"][i] == 15 + 16 + 17
    assert p["rain_14d"][i] == sum(range(5, 19)) and p["ante_14d"][i] == sum(range(4, 18))
    assert np.isnan(p["ante_14d"][13]) and p["ante_14d"][14] == sum(range(1, 15))  # never filled
    assert table.count[i] == 2 and table.event[i] and table.event[18] and table.event.sum() == 2
    out = tmp_path / "table.csv"
    write_table(table, out)
    back = read_table(out)
    assert back.usable.sum() == 20 - 14 and back.meta["landslides_total"] == 3
    np.testing.assert_allclose(back.predictors["rain_3d"][back.usable], p["rain_3d"][table.usable])


def test_hourly_long_csv_gives_n_hour_maxima(tmp_path: Path) -> None:
    hours = np.datetime64("2021-03-01T01:00") + np.arange(24 * 16) * np.timedelta64(1, "h")
    mm = np.zeros(hours.size)
    mm[24 * 15 + 10 : 24 * 15 + 13] = [5.0, 20.0, 7.0]  # day 16: hours 10-12 (stamped 11:00-13:00)
    rain = _write(
        tmp_path / "h.csv", "time,mm\n" + "".join(f"{h}Z,{v}\n" for h, v in zip(hours, mm, strict=True))
    )
    ls = _write(tmp_path / "ls.csv", "date,time,count\n2021-03-16,12:30,3\n")
    series = read_rain(rain)
    assert series.kind == "hourly" and "hourly record detected" in series.notes[0]
    table = build_table(series, read_landslides(ls), str(ls))
    day = table.days.size - 1
    assert table.predictors["rain_1h"][day] == 20 and table.predictors["rain_3h"][day] == 32
    assert table.predictors["rain_24h"][day] == 32 and table.predictors["rain_1d"][day] == 32
    assert table.count[day] == 3 and table.usable[day]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("time,mm\n", "empty"),
        ("time,mm\n2020-01-02,1\n2020-01-01,2\n", ":3: unsorted"),
        ("time,mm\n2020-01-01,1\n2020-01-01,2\n", ":3: duplicated"),
        (
            "time,mm,unit\n2020-01-01,1,mm\n2020-01-02,0.1,in\n",
            ":3: unit 'in' differs from 'mm' at line 2 (mixed units)",
        ),
        ("time,mm\n2020-01-01,1 mm\n2020-01-02,0.1 in\n", ":3: unit 'in' differs"),
        ("time,furlongs\n2020-01-01,1\n", ":1: unknown rain unit"),
        ("time,mm\n2020-01-01,1\n2020-01-02T00:00,1\n", ":3: dates and date-times are mixed"),
        ("time,mm\n2020-01-01,-4\n", ":2: rain '-4' is negative"),
    ],
)
def test_bad_rain_records_name_the_file_and_line(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(RainCatalogueError) as err:
        read_rain(path)
    assert str(path) in str(err.value) and needle in str(err.value), str(err.value)


def test_a_long_gap_is_refused_and_a_short_one_reported_never_filled(tmp_path: Path) -> None:
    days = [d for i, d in enumerate(np.datetime64("2020-01-01") + np.arange(60)) if not 20 <= i < 25]
    rain = _write(tmp_path / "gap.csv", "time,mm\n" + "".join(f"{d},1\n" for d in days))
    ls = _write(tmp_path / "ls.csv", "date\n2020-02-20\n")
    with pytest.raises(
        RainCatalogueError, match=r"gap of 5 daily step\(s\) from 2020-01-21, before .*gap.csv:22"
    ):
        build_table(read_rain(rain), read_landslides(ls), str(ls))
    table = build_table(read_rain(rain), read_landslides(ls), str(ls), max_gap_days=5)
    assert table.meta["gap_days"] == 5 and np.isnan(table.rain_mm[20:25]).all()
    assert not table.usable[20 : 25 + 14].any() and table.usable[25 + 14 :].all()  # windows on the gap out


def test_no_events_and_empty_landslide_lists_are_refused(tmp_path: Path) -> None:
    rain = _daily_csv(tmp_path / "rain.csv", [1.0] * 30)
    outside = _write(tmp_path / "ls.csv", "date\n2019-05-01\n")
    with pytest.raises(
        RainCatalogueError, match=r"ls.csv: no landslide falls inside the rain record .* line 2"
    ):
        build_table(read_rain(rain), read_landslides(outside), str(outside))
    with pytest.raises(RainCatalogueError, match="empty"):
        read_landslides(_write(tmp_path / "e.csv", "date\n"))
    with pytest.raises(RainCatalogueError, match=r"bad.csv:3: '31/31/2020' is not a date"):
        read_landslides(_write(tmp_path / "bad.csv", "date\n2020-01-01\n31/31/2020\n"))


def test_cubatao_wide_layout_real_catalogue(shared_data: Path) -> None:
    cubatao = shared_data / "cubatao-rain-landslides"
    series = read_rain(cubatao / "raingauge-hb.csv")
    assert series.layout == "wide" and series.kind == "daily" and series.mm.size == 6210  # 2000-2016
    gaps = series.gaps()
    assert len(gaps) == 1 and gaps[0][1] == 1  # one empty cell on a day that exists: reported
    ls = read_landslides(cubatao / "landslides.csv")
    assert len(ls) == 471
    table = build_table(series, ls, "landslides.csv")
    assert table.meta["landslide_days"] == 233 and table.meta["landslides_total"] == 471
    assert table.meta["usable_days"] == 6210 - 14 - 15
    # 2000-01-01 is 130.8 mm (first cell of the file), 2000-02-16 188.5 mm
    assert table.rain_mm[0] == pytest.approx(130.8) and table.rain_mm[31 + 15] == pytest.approx(188.5)


def test_wide_layout_refuses_a_value_on_a_day_the_month_lacks(tmp_path: Path) -> None:
    rows = ["Dia;jan-00;fev-00"] + [f"{d};1.0;{'2.0' if d <= 29 else ''}" for d in range(1, 32)]
    rows[30] = "30;1.0;5.0"  # 30 Feb 2000
    path = _write(tmp_path / "w.csv", "\n".join(rows) + "\n")
    with pytest.raises(RainCatalogueError, match=r"w.csv:31 column fev-00: a value on day 30"):
        read_rain(path)


def test_noaa_daily_export_through_the_existing_reader(shared_data: Path) -> None:
    series = read_rain(shared_data / "salmon-falls-gnss-hydro" / "water" / "NOAA_Castleford_daily.txt")
    assert series.layout == "noaa" and series.kind == "daily" and series.mm.size > 900  # 2016-01..2018-07
    assert 0 < np.nanmax(series.mm) < 100  # PRCP inches converted to mm: a plausible wettest day
    gaps = series.gaps()  # -9999 days are reported as gaps, never filled
    assert sum(n for _, n, _ in gaps) == int(np.isnan(series.mm).sum())


def test_cli_import_on_cubatao_prints_the_table_summary(tmp_path: Path, shared_data: Path) -> None:
    cubatao = shared_data / "cubatao-rain-landslides"
    out = tmp_path / "table.csv"
    cmd = [
        sys.executable,
        "-m",
        "export.cli",
        "data",
        "import",
        "rain-catalogue",
        "--rain",
        str(cubatao / "raingauge-hb.csv"),
        "--landslides",
        str(cubatao / "landslides.csv"),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] == "daily" and summary["landslide_days"] == 233
    assert "gap of 1 step(s) from 2008-12-31" in proc.stderr
    assert read_table(out).days.size == 6210


def test_cli_import_error_names_file_and_line_with_exit_2(tmp_path: Path) -> None:
    rain = _write(tmp_path / "r.csv", "time,mm\n2020-01-02,1\n2020-01-01,1\n")
    ls = _write(tmp_path / "l.csv", "date\n2020-01-01\n")
    cmd = [
        sys.executable,
        "-m",
        "export.cli",
        "data",
        "import",
        "rain-catalogue",
        "--rain",
        str(rain),
        "--landslides",
        str(ls),
        "--out",
        str(tmp_path / "t.csv"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"{rain}:3: unsorted" in proc.stderr, proc.stderr
