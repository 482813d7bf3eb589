"""The local status page over a real demo state dir: routes, basic auth, a headless-Chromium screenshot."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).parent))
from helpers.demo_state import demo_state

from agent.config import StatePaths, WebSettings
from agent.errors import WebError
from agent.web.server import StatusApp, StatusServer, check_basic_auth

PASSWORD = "s3cret-Pa55-word"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str, bytes]:
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _state(tmp_path: Path) -> StatePaths:
    root = tmp_path / "site"
    shutil.copytree(demo_state().root, root)
    return StatePaths(root / "state", root / "store.sqlite")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StatusServer]:
    paths = _state(tmp_path)
    srv = StatusServer(StatusApp(paths, WebSettings(port=0, plot_days=60, plot_cache_s=60))).start()
    try:
        yield srv
    finally:
        srv.stop()


def _level(srv: StatusServer) -> int:
    return int(json.loads((srv.app.paths.state_dir / "status.json").read_text())["published_level"])


def test_page_shows_level_and_plots_resolve(server: StatusServer) -> None:
    code, ctype, body = _get(server.url)
    assert code == 200 and ctype.startswith("text/html")
    page = body.decode()
    level = _level(server)
    assert f"LEVEL {level}" in page
    for card in ('id="sources"', 'id="freshness"', 'id="backend"', 'id="queue-depth"'):
        assert card in page
    assert ">onnxruntime<" in page  # the demo bundle runs on onnxruntime
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert {"/plots/levels.png", "/plots/displacement.png", "/plots/rain.png", "/plots/seismic.png"} <= set(
        srcs
    )
    for src in srcs:
        code, ctype, png = _get(server.url.rstrip("/") + src)
        assert code == 200 and ctype == "image/png" and png[:4] == b"\x89PNG"
    assert server.app.plots.renders == 1  # page + 4 plots: rendered once, then cached
    # The history says since when the current level holds.
    assert re.search(r'since <span id="since">\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ</span>', page)


def test_other_routes(server: StatusServer) -> None:
    base = server.url.rstrip("/")
    code, ctype, body = _get(base + "/status.json")
    assert code == 200 and ctype == "application/json"
    assert json.loads(body)["published_level"] == _level(server)
    assert _get(base + "/nope")[0] == 404
    assert _get(base + "/plots/unknown.png")[0] == 404
    code, _, body = _get(base + "/diagnose")
    assert code == 200 and b"run `agent diagnose`" in body
    diag = {
        "checks": [
            {"name": "serial.gnss", "status": "PASS", "value": "1.2 kB/s", "fix": ""},
            {"name": "broker", "status": "FAIL", "value": "refused", "fix": "start <mosquitto>"},
        ]
    }
    (server.app.paths.state_dir / "diagnose.json").write_text(json.dumps(diag))
    code, _, body = _get(base + "/diagnose")
    text = body.decode()
    assert code == 200 and "serial.gnss" in text and ">FAIL<" in text and "1 PASS, 0 WARN, 1 FAIL" in text
    assert "start &lt;mosquitto&gt;" in text  # escaped
    (server.app.paths.state_dir / "status.json").unlink()
    code, _, body = _get(base + "/status.json")
    assert code == 503 and b"no status.json" in body
    code, _, body = _get(base)
    assert code == 200 and b"NO STATUS" in body


def test_basic_auth(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    settings = WebSettings(port=0, basic_auth_user="tech", basic_auth_password_file=pw, plot_cache_s=60)
    srv = StatusServer(StatusApp(_state(tmp_path), settings)).start()
    try:
        base = srv.url.rstrip("/")
        code, _, _ = _get(base + "/status.json")
        assert code == 401
        assert _get(base + "/metrics", ("tech", "wrong"))[0] == 401
        assert _get(base + "/", ("other", PASSWORD))[0] == 401
        assert _get(base + "/status.json", ("tech", PASSWORD))[0] == 200
        assert _get(base + "/metrics", ("tech", PASSWORD))[0] == 200
        req = urllib.request.Request(base + "/")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=10)
        assert "Basic" in info.value.headers["WWW-Authenticate"]
        assert srv.app.counters["unauthorised"] == 4
    finally:
        srv.stop()
    encoded = base64.b64encode(f"tech:{PASSWORD}".encode()).decode()
    assert caplog.records, "the server logs requests at DEBUG"
    assert PASSWORD not in caplog.text and encoded not in caplog.text


def test_check_basic_auth_pure() -> None:
    ok = "Basic " + base64.b64encode(b"u:p:with:colons").decode()
    assert check_basic_auth(ok, b"u", b"p:with:colons")
    assert not check_basic_auth(None, b"u", b"p")
    assert not check_basic_auth("Bearer x", b"u", b"p")
    assert not check_basic_auth("Basic !!!notbase64", b"u", b"p")
    assert not check_basic_auth("Basic " + base64.b64encode(b"nocolon").decode(), b"nocolon", b"")


@pytest.mark.faults
def test_settings_and_startup_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="basic_auth_password_file is not"):
        WebSettings(basic_auth_user="tech")
    with pytest.raises(ValidationError, match="extra"):
        WebSettings.model_validate({"hostname": "x"})
    paths = StatePaths(tmp_path, tmp_path / "store.sqlite")
    missing = WebSettings(port=0, basic_auth_user="t", basic_auth_password_file=tmp_path / "nope")
    with pytest.raises(WebError, match=r"password file .*nope unreadable") as info:
        StatusApp(paths, missing)
    assert info.value.fix
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(WebError, match="empty"):
        StatusApp(
            paths, WebSettings(port=0, basic_auth_user="t", basic_auth_password_file=tmp_path / "empty")
        )
    first = StatusServer(StatusApp(paths, WebSettings(port=0))).start()
    try:
        with pytest.raises(WebError, match="cannot listen") as info:
            StatusServer(StatusApp(paths, WebSettings(port=first.port)))
        assert "web.port" in info.value.fix
    finally:
        first.stop()


@pytest.mark.faults
def test_page_without_store_says_why(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_text(json.dumps({"time": 1.0e9, "published_level": 0, "sources": {}}))
    srv = StatusServer(StatusApp(StatePaths(tmp_path, tmp_path / "none.sqlite"), WebSettings(port=0))).start()
    try:
        code, _, body = _get(srv.url)
        assert code == 200 and b"LEVEL 0" in body and b"Plots unavailable" in body and b"none.sqlite" in body
        assert b"<img" not in body
    finally:
        srv.stop()


def test_screenshot_in_headless_chromium(server: StatusServer, tmp_path: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (the Makefile installs the Debian package `chromium`)")
    # The page's content first: the level text and every plot it references resolve.
    page = _get(server.url)[2].decode()
    level = _level(server)
    assert f"LEVEL {level}" in page
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert _get(server.url.rstrip("/") + src)[:2] == (200, "image/png")
    shot = tmp_path / "status.png"
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", f"--screenshot={shot}"]
    subprocess.run(
        [*cmd, "--window-size=1280,1600", server.url], capture_output=True, timeout=120, check=False
    )
    assert shot.is_file(), "chromium wrote no screenshot"
    from matplotlib.image import imread

    img = imread(str(shot))
    assert img.shape[:2] == (1600, 1280) and shot.stat().st_size > 50_000
    # The level badge's colour fills a large block of the screenshot (the page rendered, with its level).
    from agent.report.html import level_colour

    rgb = tuple(int(level_colour(level)[i : i + 2], 16) / 255 for i in (1, 3, 5))
    close = (abs(img[:, :, :3] - rgb) < 0.02).all(axis=2)
    assert close.sum() > 5000, f"level colour {level_colour(level)} covers only {close.sum()} pixels"
    # The plots were drawn: a band of the page below the cards is not background.
    assert (img[1000:1600, 40:1200, :3] < 0.5).any(axis=2).sum() > 2000


def test_status_page_command_serves_until_sigterm(tmp_path: Path) -> None:
    import os
    import signal
    import socket

    paths = _state(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "import typer, sys\nfrom agent.web.cli import register\napp = typer.Typer()\nregister(app)\n"
        "app.command('noop')(lambda: None)\napp()\n"
    )
    args = [
        "status-page",
        "--state-dir",
        str(paths.state_dir),
        "--store",
        str(paths.store),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"status page on http://127.0.0.1:{port}/" in line, line
        code_, _, body = _get(f"http://127.0.0.1:{port}/status.json")
        assert code_ == 200 and json.loads(body)["site"] == "demo-site"
        os.kill(proc.pid, signal.SIGUSR1)  # a technician's stack dump: printed, nothing stops
        time.sleep(0.5)
        assert proc.poll() is None and _get(f"http://127.0.0.1:{port}/status.json")[0] == 200
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        rest = proc.stdout.read()
        assert "most recent call first" in rest and "serve_forever" in rest, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
