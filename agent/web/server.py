"""The local status page: a small threaded HTTP server over the daemon's state directory.

Pages: ``/`` (current level, per-source levels, freshness, backend, queue depth, the report's plots),
``/plots/<name>.png`` (rendered on request, cached ``plot_cache_s``), ``/diagnose`` (the latest
``<state_dir>/diagnose.json``), ``/status.json`` and ``/metrics`` (Prometheus). It reads files only
(status.json, the store read-only, history.jsonl), so it shows the same thing whether it runs inside the
daemon or beside it (`agent status-page`). Bound to 127.0.0.1 unless configured; optional basic auth
with the password from a file, compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agent.config import StatePaths, WebSettings
from agent.errors import LewsError, WebError
from agent.history import LevelRecord, level_since
from agent.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agent.metrics import exposition, make_registry, update_from_status
from agent.report.data import DIAGNOSE_FILE, STATUS_FILE, load_report_data, read_status
from agent.report.html import published_level
from agent.warning.settings import WarningSettings
from agent.web.pages import diagnose_page, status_page

log = logging.getLogger(__name__)

PLOT_PATH = re.compile(r"^/plots/([a-z]+)\.png$")


def read_password(path: Path) -> bytes:
    """First line of the password file (bytes); WebError when missing, unreadable or empty."""
    try:
        text = path.read_bytes().splitlines()
    except OSError as exc:
        raise WebError(
            f"basic-auth password file {path} unreadable: {exc.strerror}",
            fix="create it with the password on its first line, owned by the agent user, mode 0600",
        ) from exc
    if not text or not text[0].strip():
        raise WebError(
            f"basic-auth password file {path} is empty", fix="write the password on its first line"
        )
    return text[0].strip()


def check_basic_auth(header: str | None, user: bytes, password: bytes) -> bool:
    """True when an ``Authorization: Basic`` header carries exactly this user and password (pure;
    both parts compared in constant time, whatever their lengths)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    got_user, sep, got_pw = decoded.partition(b":")
    ok_user = hmac.compare_digest(got_user, user)
    ok_pw = hmac.compare_digest(got_pw, password)
    return bool(sep) and ok_user and ok_pw


class PlotCache:
    """Renders all plots at most once per ``ttl_s`` (one render at a time; the CPU is small)."""

    def __init__(self, render: Callable[[], dict[str, bytes]], ttl_s: float) -> None:
        self._render, self.ttl_s = render, ttl_s
        self._lock = threading.Lock()
        self._pngs: dict[str, bytes] = {}
        self._error = ""
        self._at = -float("inf")
        self.renders = 0

    def get(self) -> tuple[dict[str, bytes], str]:
        """(name -> PNG, error text); the error says why there are no plots."""
        with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                try:
                    self._pngs, self._error = self._render(), ""
                except LewsError as exc:
                    self._pngs, self._error = {}, str(exc)
                    log.warning("status page: plots unavailable: %s", exc)
                self._at = time.monotonic()
                self.renders += 1
            return self._pngs, self._error


class StatusApp:
    """What the handler serves; independent of the HTTP plumbing."""

    def __init__(
        self,
        paths: StatePaths,
        settings: WebSettings,
        *,
        warning: WarningSettings | None = None,
        site: str = "",
    ) -> None:
        self.paths, self.settings = paths, settings
        self.warning, self.site = warning, site
        self.metrics = make_registry()
        self.plots = PlotCache(self._render, settings.plot_cache_s)
        self.counters: dict[str, int] = {}
        self.history_levels: list[LevelRecord] = []  # from the last plot render (for "level since")
        self._auth: tuple[bytes, bytes] | None = None
        if settings.basic_auth_user and settings.basic_auth_password_file is not None:
            self._auth = (settings.basic_auth_user.encode(), read_password(settings.basic_auth_password_file))

    def _render(self) -> dict[str, bytes]:
        from agent.report.plots import render_all

        data = load_report_data(self.paths, self.settings.plot_days, warning=self.warning, site=self.site)
        self.history_levels = [] if data.levels_derived else data.history.levels
        return render_all(data)

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def authorised(self, header: str | None) -> bool:
        return self._auth is None or check_basic_auth(header, *self._auth)

    def status(self) -> tuple[dict[str, Any] | None, float | None, str]:
        """(status dict, wall time it was written, error text)."""
        path = self.paths.state_dir / STATUS_FILE
        try:
            status = read_status(self.paths.state_dir)
            written = path.stat().st_mtime if status is not None else None
        except (LewsError, OSError) as exc:
            return None, None, str(exc)
        return status, written, ""

    def diagnose(self) -> tuple[dict[str, Any] | None, float | None, str]:
        path = self.paths.state_dir / DIAGNOSE_FILE
        if not path.is_file():
            return None, None, ""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return (data if isinstance(data, dict) else None), path.stat().st_mtime, ""
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return None, None, f"{path} unreadable: {exc}"

    def route(self, path: str) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body) for a GET of ``path``."""
        path = path.split("?", 1)[0]
        html_type = "text/html; charset=utf-8"
        if path == "/":
            status, written, err = self.status()
            pngs, plot_err = self.plots.get()
            since = level_since(self.history_levels, published_level(status)) if status else None
            body = status_page(
                status, written, err, sorted(pngs), plot_err, self.settings, time.time(), level_since=since
            )
            return 200, html_type, body.encode()
        if m := PLOT_PATH.match(path):
            pngs, plot_err = self.plots.get()
            png = pngs.get(m.group(1))
            if png is None:
                return 404, "text/plain; charset=utf-8", f"no plot {m.group(1)!r} {plot_err}".encode()
            return 200, "image/png", png
        if path == "/status.json":
            status, _, err = self.status()
            if status is None:
                return 503, "application/json", json.dumps({"error": err or "no status.json yet"}).encode()
            return 200, "application/json", json.dumps(status, indent=1, default=str).encode()
        if path == "/diagnose":
            diag, written, err = self.diagnose()
            return 200, html_type, diagnose_page(diag, written, err, time.time()).encode()
        if path == "/metrics":
            status, written, _ = self.status()
            update_from_status(self.metrics, status, written_at=written)
            return 200, METRICS_CONTENT_TYPE, exposition(self.metrics)
        return 404, "text/plain; charset=utf-8", b"not found: try / /status.json /diagnose /metrics\n"


def _handler(app: StatusApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lews-agent"
        sys_version = ""
        timeout = 30  # seconds a client may take to send its request (a stalled one frees its thread)

        def do_GET(self) -> None:
            if not app.authorised(self.headers.get("Authorization")):
                app.count("unauthorised")
                body = b"authentication required\n"
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="lews-agent", charset="UTF-8"')
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            try:
                code, ctype, body = app.route(self.path)
            except Exception:  # a page must never take the server down: count, log, 500
                app.count("errors")
                log.exception("status page: %s failed", self.path)
                code, ctype, body = 500, "text/plain; charset=utf-8", b"internal error (see the agent log)\n"
            app.count(f"http_{code}")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Only the request line and status: never headers (the Authorization header holds the password).
            log.debug("status page %s: " + format, self.address_string(), *args)

    return Handler


class StatusServer:
    """ThreadingHTTPServer in a daemon thread: ``start()``, ``url``, ``stop()``."""

    def __init__(self, app: StatusApp) -> None:
        self.app = app
        s = app.settings
        try:
            self.httpd = ThreadingHTTPServer((s.host, s.port), _handler(app))
        except OSError as exc:
            raise WebError(
                f"status page cannot listen on {s.host}:{s.port}: {exc.strerror}",
                fix="choose a free web.port, or a host address this machine has",
            ) from exc
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="status-page", daemon=True)
        if s.host not in ("127.0.0.1", "localhost", "::1") and not s.basic_auth_user:
            log.warning("status page on %s without basic auth: anyone on that network can read it", s.host)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.httpd.server_address[0])
        return f"http://{host}:{self.port}/"

    def start(self) -> StatusServer:
        self._thread.start()
        log.info("status page on %s", self.url)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
