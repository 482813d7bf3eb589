"""`agent report --days N --out DIR`: PNGs and a self-contained HTML report from a real demo state dir."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from helpers.demo_state import demo_state

from agent.config import StatePaths
from agent.history import HISTORY_FILE, save_riskmap
from agent.report.cli import register
from agent.report.data import load_report_data

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop", hidden=True)
    def noop() -> None:  # a second command keeps `report` a named sub-command, as in `agent`
        """Unused."""

    return app


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _copy_state(tmp_path: Path) -> StatePaths:
    demo = demo_state()
    root = tmp_path / "site"
    shutil.copytree(demo.root, root)
    return StatePaths(root / "state", root / "store.sqlite")


def test_report_cli_writes_plots_and_html(tmp_path: Path) -> None:
    paths = _copy_state(tmp_path)
    save_riskmap(
        paths.state_dir, np.outer(np.linspace(0, 1, 32), np.ones(48)), t=1.77e9, threshold=0.6, synthetic=True
    )
    out = tmp_path / "report"
    args = ["report", "--days", "60", "--out", str(out), "--state-dir", str(paths.state_dir)]
    res = CliRunner().invoke(_app(), [*args, "--store", str(paths.store)])
    assert res.exit_code == 0, res.output
    for name in ("levels", "displacement", "rain", "seismic", "riskmap"):
        w, h = _png_size((out / f"{name}.png").read_bytes())
        assert w >= 500 and h >= 200, (name, w, h)
    page = (out / "report.html").read_text()
    status = json.loads((paths.state_dir / "status.json").read_text())
    level = status["published_level"]
    assert f"LEVEL {level}" in page
    # Self-contained: every image is an embedded PNG that decodes, nothing is fetched from elsewhere.
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    for s in srcs:
        assert base64.b64decode(s.split(",", 1)[1])[:8] == PNG_MAGIC
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_report_window_is_data_time(tmp_path: Path) -> None:
    paths = demo_state().paths
    data60 = load_report_data(paths, 60)
    data3 = load_report_data(paths, 3)
    assert data3.end == data60.end  # the window ends at the newest sample, not at the wall clock
    assert data3.end - data3.start == pytest.approx(3 * 86400)
    assert data3.hourly is not None and data3.hourly.times.min() >= data3.start - 3600
    assert data60.daily is not None and len(data60.daily) > len(data3.daily or [])
    assert len(data60.history.forecasts) > len(data3.history.forecasts)
    assert not data60.levels_derived


def test_report_without_history_derives_wire_levels(tmp_path: Path) -> None:
    paths = _copy_state(tmp_path)
    (paths.state_dir / HISTORY_FILE).unlink()
    data = load_report_data(paths, 60)
    assert data.levels_derived
    assert {"wire"} <= set(data.history.levels[0].sources)
    # The last record is the current status, inside the window.
    assert data.history.levels[-1].published is not None and data.history.levels[-1].t < data.end


@pytest.mark.faults
def test_report_errors_name_the_thing_and_exit_2(tmp_path: Path) -> None:
    app = _app()
    res = CliRunner().invoke(
        app,
        [
            "report",
            "--out",
            str(tmp_path / "o"),
            "--state-dir",
            str(tmp_path),
            "--store",
            str(tmp_path / "x.db"),
        ],
    )
    assert res.exit_code == 2
    assert "x.db not found" in res.output and "fix:" in res.output
    res = CliRunner().invoke(app, ["report", "--days", "0", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--days 0" in res.output
    (tmp_path / "status.json").write_text("{not json")
    paths = demo_state().paths
    res = CliRunner().invoke(
        app,
        ["report", "--out", str(tmp_path / "o"), "--state-dir", str(tmp_path), "--store", str(paths.store)],
    )
    assert res.exit_code == 2 and "status.json is unreadable" in res.output


def test_report_with_config_file(tmp_path: Path) -> None:
    paths = _copy_state(tmp_path)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        f'[site]\nsite = "hill-7"\n[daemon]\nstate_dir = "{paths.state_dir}"\n'
        f'[store]\npath = "{paths.store}"\n'
        "[warning.forecast.displacement_mm]\nadvisory = 3.0\nwatch = 6.0\nwarning = 12.0\n"
    )
    out = tmp_path / "r"
    res = CliRunner().invoke(_app(), ["report", "--days", "10", "--out", str(out), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "hill-7" in (out / "report.html").read_text()
