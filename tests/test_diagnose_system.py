"""System and bundle checks that depend on the machine: thermal zones, Jetson markers, disk, TensorRT."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.config import config_from_dict
from agent.diagnose import checks_bundle, checks_system
from agent.diagnose.checks_sensors import seismic_rates
from agent.diagnose.model import Context, Status
from agent.diagnose.probe import SeismicBlockSeen


def _ctx(tmp_path: Path, **inference: object) -> Context:
    return Context(
        config_from_dict(
            {
                "daemon": {"state_dir": str(tmp_path / "state" / "not-yet")},
                "inference": inference,
                "mqtt": {"outbox": {"path": str(tmp_path / "o.sqlite")}},
            }
        )
    )


def _zone(root: Path, i: int, kind: str, milli_c: int) -> None:
    z = root / f"thermal_zone{i}"
    z.mkdir(parents=True)
    (z / "type").write_text(kind + "\n")
    (z / "temp").write_text(f"{milli_c}\n")


@pytest.mark.parametrize(("temps", "status"), [((45000, 52000), Status.PASS), ((45000, 85500), Status.WARN),
                                                ((97000,), Status.FAIL)])  # fmt: skip
def test_temperature_from_thermal_zones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temps: tuple[int, ...], status: Status
) -> None:
    root = tmp_path / "thermal"
    for i, t in enumerate(temps):
        _zone(root, i, f"zone{i}-therm", t)
    monkeypatch.setattr(checks_system, "THERMAL_ROOT", root)
    res = checks_system.temperature(_ctx(tmp_path))
    assert res.status == status, res
    assert f"{max(temps) / 1000:.1f} degC" in res.value


def test_no_thermal_zones_and_not_a_jetson_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks_system, "THERMAL_ROOT", tmp_path / "none")
    monkeypatch.setattr(checks_system, "JETSON_MARKERS", (tmp_path / "nv_tegra_release",))
    assert "not available here" in checks_system.temperature(_ctx(tmp_path)).value
    res = checks_system.power_mode(_ctx(tmp_path))
    assert res.status == Status.PASS and "not a Jetson" in res.value
    (tmp_path / "nv_tegra_release").write_text("# R36 (release)\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvpmodel on PATH
    res = checks_system.power_mode(_ctx(tmp_path))
    assert res.status == Status.WARN and "nvpmodel" in res.fix


def test_disk_measures_the_nearest_existing_parent(tmp_path: Path) -> None:
    res = checks_system.disk(_ctx(tmp_path))
    assert res.status in (Status.PASS, Status.WARN, Status.FAIL)
    assert f"at {tmp_path}" in res.value and "MiB free" in res.value


def test_tensorrt_without_engine_fails_with_the_build_command(tmp_path: Path) -> None:
    onnx_only = _ctx(tmp_path)
    assert checks_bundle.engine(onnx_only).status == Status.PASS  # not configured
    res = checks_bundle.engine(_ctx(tmp_path, backend="tensorrt"))
    assert res.status == Status.FAIL
    assert "no TensorRT engine" in res.value and "agent-export engine" in res.fix


def _block(i: int, t_ms: int, boot: int = 7, n: int = 50) -> SeismicBlockSeen:
    return SeismicBlockSeen(0.0, i, t_ms, 100, 1, 1, boot, tuple(range(n)))


def test_seismic_rates_use_device_index_and_clock_not_arrival() -> None:
    steady = [_block(50 * k, 1_000_000 + 500 * k) for k in range(6)]
    r = seismic_rates(steady)
    assert r["missing"] == 0 and r["expected"] == 300 and r["device_hz"] == pytest.approx(100.0)
    lost = [b for k, b in enumerate(steady) if k != 3]  # one block lost on the wire
    assert seismic_rates(lost)["missing"] == 50
    fast = [_block(50 * k, 1_000_000 + 400 * k) for k in range(6)]  # 50 samples per 0.4 s of device time
    assert seismic_rates(fast)["device_hz"] == pytest.approx(125.0)
    rebooted = [*steady[:3], _block(0, 2_000_000, boot=8), _block(50, 2_000_500, boot=8)]
    assert seismic_rates(rebooted)["missing"] == 0
    assert math.isnan(seismic_rates([_block(0, 0), _block(50, 0)])["device_hz"])  # device clock not set
