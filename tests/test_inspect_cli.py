"""`agent inspect`: real receiver logs, a firmware-bridge stream, agent captures, and garbage."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from agent.sensors.cli import register
from agent.sensors.gnss import Reference
from agent.sensors.gnss_sim import SimConfig, Trajectory, simulate

LOGS = "gnss-receiver-logs"
HPG = f"{LOGS}/gpsd_regress/ublox-zed-f9p_hpg1.11.log"
REF = Reference(46.05, 14.50, 420.0)


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps typer from collapsing the group
    def _noop() -> None:
        return None

    return app


def _inspect(*args: str) -> tuple[int, str, Any]:
    result = CliRunner().invoke(_app(), ["inspect", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    data = json.loads(result.stdout) if "--json" in args and result.stdout.startswith("{") else None
    return result.exit_code, result.output, data


def test_inspect_real_mixed_log_json(shared_data: Path) -> None:
    path = shared_data / HPG
    code, _, out = _inspect(str(path), "--json")
    assert code == 0
    assert out["bytes"] == path.stat().st_size
    assert out["messages"]["GNGGA"] == 655 and out["messages"]["RXM-RAWX"] == 654
    assert out["errors"] == 1 and out["format"] == "gnss"
    assert out["epochs"]["total"] == out["epochs"]["gated"] == 655
    assert out["epochs"]["fix_type"] == {"3D": 655} and out["epochs"]["carrier"] == {"none": 655}
    sol = out["solution"]
    assert sol["count"] == 655 and sol["reference"]["source"] == "median of gated epochs"
    assert all(abs(m) < 1.0 for m in sol["median_enu_mm"])  # relative to its own median
    assert 1000 < sol["mad_enu_mm"][0] < 2000 and 300 < sol["mad_enu_mm"][1] < 900
    # the median position agrees with the gpsd header (45.877591500S 170.500124833E) within ~2 m
    pos = sol["median_position"]
    assert abs(pos["lat"] + 45.8775915) < 2e-5 and abs(pos["lon"] - 170.500124833) < 3e-5


def test_inspect_format_filter_and_reference(shared_data: Path) -> None:
    path = shared_data / HPG
    _, _, ubx = _inspect(str(path), "--json", "--format", "ubx")
    assert set(ubx["messages"]) == {"NAV-CLOCK", "RXM-MEASX", "RXM-RAWX"}
    assert ubx["ignored_messages"]["GNGGA"] == 655 and ubx["epochs"]["total"] == 0 and ubx["solution"] is None
    _, _, nmea = _inspect(str(path), "--json", "--format", "nmea", "--ref", "-45.8775915,170.500124833,18.5")
    assert set(nmea["messages"]) == {"GNGGA", "GNGLL", "GNRMC", "GNVTG"}
    assert nmea["solution"]["reference"]["source"] == "given"
    assert abs(nmea["solution"]["median_enu_mm"][0]) < 2000
    _, _, rtk = _inspect(str(path), "--json", "--gate", "rtk-fixed", "--step", "60")
    assert rtk["epochs"]["rejected"] == {"carrier": 655} and rtk["solution"] is None
    assert sum(s["total"] for s in rtk["steps"]) == 655 and all(s["count"] == 0 for s in rtk["steps"])
    code, output, _ = _inspect(str(path), "--format", "rinex")
    assert code == 2 and "--format" in output


def test_inspect_gz_and_damaged_gz(shared_data: Path, tmp_path: Path) -> None:
    gz = shared_data / LOGS / "jdesbonnet_static_m8p/rover-20181004-1237.ubx.gz"
    _, _, out = _inspect(str(gz), "--json")
    assert out["read"]["container"] == "gzip" and out["messages"]["NAV-SOL"] == 1205
    # GGA wins over NAV-SOL in the same epoch; the first NAV-SOL comes before any GGA
    assert out["epochs"]["by_source"] == {"GGA": 1204, "NAV-SOL": 1}
    cut = tmp_path / "cut.ubx.gz"
    cut.write_bytes(gz.read_bytes()[:300_000])
    code, _, part = _inspect(str(cut), "--json")
    assert code == 0 and "gzip_error" in part["read"]
    assert 0 < part["messages"]["NAV-SOL"] < 1205


def test_inspect_text_table(shared_data: Path) -> None:
    code, output, _ = _inspect(str(shared_data / LOGS / "pyubx2/pygpsdata-MIXED.log"))
    assert code == 0
    for text in ("NAV-PVT", "39", "median e/n/u mm", "spread (1.4826 MAD)", "errors"):
        assert text in output


@pytest.mark.faults
@pytest.mark.parametrize("fmt", ["auto", "ubx", "nmea", "bridge"])
def test_inspect_garbage_exit_1_errors_counted(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(1)
    junk = tmp_path / "junk.bin"
    # random bytes with sync-like fragments sprinkled in
    data = bytearray(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    for pos in rng.integers(0, len(data) - 8, 300):
        data[pos : pos + 3] = [b"\xb5b\x01", b"$GN", b"\x00\x05\x01"][int(pos) % 3]
    junk.write_bytes(bytes(data))
    code, output, out = _inspect(str(junk), "--json", "--format", fmt)
    assert code == 1, output  # read, but nothing recognised: not a green
    assert out["bytes"] == len(data) and out["errors"] > 0 and out["messages"] == {}
    code, output, _ = _inspect(str(junk), "--format", fmt)
    assert code == 1 and "Traceback" not in output and "recognised no receiver" in output
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert _inspect(str(empty), "--json", "--format", fmt)[2]["bytes"] == 0


def _bridge_stream() -> tuple[bytes, dict[str, int]]:
    from firmware_bridge.codec import FrameEncoder
    from firmware_bridge.messages import Capability, Hello, Rain, SampleFormat, Seismic, Wire, WireState

    enc = FrameEncoder(boot_id=0x1234)
    parts = [enc.encode(Hello(42, 1, 2, 3, Capability.RAIN | Capability.SEISMIC | Capability.WIRE))]
    for k in range(20):
        parts.append(enc.encode(Rain(tips=100 + k, uptime_s=60 * k, device_time_ms=0)))
        parts.append(enc.encode(Seismic(k * 50, 0, 100, 1, SampleFormat.INT16, tuple(range(50)))))
    parts.append(enc.encode(Wire(WireState.TRIPPED, 1, 1200, 0)))
    parts.insert(10, b"\x17\x42garbage\x99" * 3 + b"\x00")
    enc.seq += 5  # five frames lost on the line
    parts.append(enc.encode(Rain(tips=130, uptime_s=1300, device_time_ms=0)))
    return b"".join(parts), {"HELLO": 1, "RAIN": 21, "SEISMIC": 20, "WIRE": 1}


def test_inspect_bridge_stream_auto_detected(tmp_path: Path) -> None:
    data, expected = _bridge_stream()
    path = tmp_path / "bridge.bin"
    path.write_bytes(data)
    code, _, out = _inspect(str(path), "--json")
    assert code == 0 and out["format"] == "bridge"
    assert out["messages"] == expected
    assert out["errors"] >= 1 and out["bytes"] == len(data)
    assert out["sequence"]["missing_frames"] == 5
    assert out["seismic"] == {"samples": 1000, "index_gaps": 0}
    assert out["wire_states"] == {"TRIPPED": 1}
    assert out["rain_tips"] == {"0x00001234": {"first": 100, "last": 130}}


def test_inspect_capture_directory_and_cap_file(tmp_path: Path) -> None:
    from agent.sensors.capture import CaptureWriter

    traj = Trajectory((0.0, 60.0), (0.0, 6.0), (0.0, 0.0), (0.0, 0.0))
    epochs = list(simulate(SimConfig(REF, traj, duration_s=60.0)))
    bridge, expected = _bridge_stream()
    cap = tmp_path / "cap"
    with CaptureWriter(cap) as writer:
        gnss_port = writer.add_port("gnss", "ubx")
        bridge_port = writer.add_port("mcu", "bridge")
        for k, ep in enumerate(epochs):
            gnss_port(ep.t, ep.data)
            if k < len(bridge) // 64 + 1:
                bridge_port(ep.t, bridge[64 * k : 64 * (k + 1)])
    code, _, out = _inspect(str(cap), "--json")
    assert code == 0 and set(out["ports"]) == {"gnss", "mcu"}
    g = out["ports"]["gnss"]
    assert g["messages"]["NAV-PVT"] == 60 and g["epochs"]["gated"] == 60 and g["errors"] == 0
    assert g["epochs"]["carrier"] == {"fixed": 60}
    assert out["ports"]["mcu"]["messages"] == expected
    assert out["messages"]["NAV-PVT"] == 60 and out["messages"]["RAIN"] == 21
    assert out["bytes"] == len(bridge) + sum(len(e.data) for e in epochs)
    code, _, single = _inspect(str(cap / "gnss.cap"), "--json")
    assert single["read"]["container"] == "cap" and single["read"]["records"] == 60
    assert single["messages"] == g["messages"]
    gzipped = tmp_path / "sim.ubx.gz"
    gzipped.write_bytes(gzip.compress(b"".join(e.data for e in epochs)))
    assert _inspect(str(gzipped), "--json")[2]["messages"] == g["messages"]


@pytest.mark.faults
def test_inspect_through_the_agent_entry_point(tmp_path: Path, shared_data: Path) -> None:
    """The acceptance path: `agent inspect` as a process (all command modules registered)."""
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(5).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    for path in (junk, shared_data / LOGS / "pyubx2/pygpsdata-MIXED.log"):
        proc = subprocess.run(
            [sys.executable, "-m", "agent.cli", "inspect", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == (1 if path == junk else 0), proc.stderr
        assert "Traceback" not in proc.stderr
        out = json.loads(proc.stdout)
        assert out["bytes"] == path.stat().st_size
        assert (out["errors"] > 0) if path == junk else (out["messages"]["NAV-PVT"] == 39)


@pytest.mark.parametrize(
    "content", [b"", b"     2.11           OBSERVATION DATA    M (MIXED)           RINEX VERSION / TYPE\n"]
)
def test_inspect_nothing_recognised_exits_non_zero(tmp_path: Path, content: bytes) -> None:
    """/dev/null, an empty file or a RINEX observation file: read fine, nothing a receiver sent."""
    path = tmp_path / "site.obs"
    path.write_bytes(content * 50)
    for target in (str(path), "/dev/null"):
        code, output, _ = _inspect(target)
        assert code == 1, output
        assert "recognised no receiver (UBX/NMEA) or bridge messages" in output


def test_inspect_prints_times_as_iso(shared_data: Path) -> None:
    code, output, _ = _inspect(str(shared_data / LOGS / "pyubx2/pygpsdata-MIXED.log"))
    assert code == 0
    assert "epochs.t_first" in output
    line = next(x for x in output.splitlines() if "epochs.t_first" in x)
    assert "Z" in line and "T" in line, line
