"""`agent capture import` + `agent replay` on every real u-blox log in ../shared/data/gnss-receiver-logs:
frames stamped with the receiver's own time, the capture replays through the real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agent.features.settings import StoreConfig
from agent.features.store import Store
from agent.sensors import capture_cli
from agent.sensors.capture import iter_port, read_index
from agent.sensors.replay import replay
from agent.sensors.settings import SensorsConfig

LOGS = "gnss-receiver-logs"
# (log, first epoch time the receiver reports, whether it carries positions the default sources use)
UBLOX_LOGS = [
    ("gpsd_regress/ublox-neo-m8t.log", "2018-10-25T20:55:46.000Z"),
    ("gpsd_regress/ublox-zed-f9p-hp.log", "2019-04-22T21:19:19.999Z"),
    ("gpsd_regress/ublox-zed-f9p-nmea.log", "2019-04-12T00:39:56.000Z"),
    ("gpsd_regress/ublox-zed-f9p_hpg1.11.log", "2019-04-12T01:19:03.000Z"),
    ("jdesbonnet_static_m8p/base-20181004-1236.ubx.gz", "2018-10-04T12:36:54.999Z"),
    ("jdesbonnet_static_m8p/rover-20181004-1237.ubx.gz", "2018-10-04T12:37:50.999Z"),
    ("pyubx2/pygpsdata-MIXED.log", "2020-10-23T11:33:15.000Z"),
    ("pyubx2/pygpsdata-NAV-ZED-X20P.log", "2025-08-25T19:38:19.000Z"),
    ("rtklib_geonet_rinex/ubx_20080526.ubx", "2008-05-26T05:59:11.000Z"),
]
SENSORS = {
    "ports": [{"name": "gnss", "path": "/dev/null", "kind": "gnss"}],
    "gnss": {"gate": "none", "reference": {"lat": 0.0, "lon": 0.0, "h_m": 0.0}},
}


def _app() -> typer.Typer:
    app = typer.Typer()
    capture_cli.register(app)

    @app.command("noop")
    def _noop() -> None:
        return None

    return app


def _import(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), ["capture", "import", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize(("log", "t_first"), UBLOX_LOGS, ids=[Path(x).name for x, _ in UBLOX_LOGS])
def test_import_then_replay(shared_data: Path, tmp_path: Path, log: str, t_first: str) -> None:
    src = shared_data / LOGS / log
    cap = tmp_path / "cap"
    code, output = _import(str(src), "--port", "gnss", "--out", str(cap), "--json")
    assert code == 0, output
    doc = json.loads(output.strip().splitlines()[-1])
    assert doc["t_first_utc"] == t_first and doc["t_last_utc"] >= t_first
    assert doc["frames"] > 0 and doc["records"] > 0
    index = read_index(cap)
    assert set(index.ports) == {"gnss"} and index.closed_utc is not None
    records = list(iter_port(cap, "gnss"))
    times = [t for t, _ in records]
    assert times == sorted(times) and len(records) == doc["records"]
    assert sum(len(d) for _, d in records) == doc["bytes_written"] <= doc["bytes_in"]
    store = Store(StoreConfig(path=tmp_path / "replay.sqlite"))
    try:
        result = replay(cap, SensorsConfig.model_validate(SENSORS), store)
    finally:
        store.close()
    assert result.records == doc["records"]
    assert result.capture_s == pytest.approx(times[-1] - times[0])


def test_not_a_receiver_log_is_refused(shared_data: Path, tmp_path: Path) -> None:
    code, output = _import(
        str(shared_data / LOGS / "rtklib_geonet_rinex/07590920.05o"), "--out", str(tmp_path / "c")
    )
    assert code == 2 and "no UBX or NMEA frame passed its checksum" in output and "RINEX" in output
    assert not (tmp_path / "c").exists()


def test_log_without_dates_needs_start(tmp_path: Path) -> None:
    """GGA carries only a time of day: refused without --start, stamped on that day with it."""
    from pynmeagps import NMEAMessage

    gga = NMEAMessage("GP", "GGA", 0, time="12:00:01", lat=46.05, NS="N", lon=14.5, EW="E", quality=1,
                      numSV=9, HDOP=0.9, alt=400.0, altUnit="M", sep=45.0, sepUnit="M")  # fmt: skip
    log = tmp_path / "gga.nmea"
    log.write_bytes(gga.serialize() * 3)
    code, output = _import(str(log), "--out", str(tmp_path / "a"))
    assert code == 2 and "--start" in output
    code, output = _import(
        str(log), "--out", str(tmp_path / "b"), "--start", "2024-05-01T00:00:00Z", "--json"
    )
    assert code == 0, output
    assert json.loads(output.strip().splitlines()[-1])["t_first_utc"] == "2024-05-01T12:00:01.000Z"
