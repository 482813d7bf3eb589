"""The support archive (`agent diagnose --bundle OUT.tar.gz`): what a remote engineer needs, no secrets.

Members: ``config.json`` (the validated configuration with secret-bearing fields redacted),
``diagnose.json``, ``status.json`` (the daemon's last status, if any), ``store-stats.json`` (samples per
channel with time range, step rows, counters; store opened read-only), ``logs.txt`` (``journalctl -u
lews-agent`` when journald answers, else the reason) and ``manifest.json`` (what is in it and why
anything is missing). As a last guard every member is scrubbed of the secret values the configuration
points at (broker password, HMAC command keys, TLS private key), so a secret that leaked into a log
line or a status field is replaced by ``<redacted>`` too.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from agent.config import AgentConfig
from agent.diagnose.model import Context, read_status_file
from agent.errors import LewsError, SupportArchiveError

log = logging.getLogger(__name__)
REDACTED = "<redacted>"
SECRET_KEY = re.compile(r"(password|secret|token|passphrase)(?!_file|_credential)", re.IGNORECASE)
LOG_LINES = 5000
JOURNAL_TIMEOUT_S = 10.0


def redact(tree: Any) -> Any:
    """Values of keys that name a secret are replaced (file paths and credential names are kept)."""
    if isinstance(tree, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) else redact(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact(v) for v in tree]
    return tree


def secret_values(cfg: AgentConfig) -> list[str]:
    """The secret strings the configuration points at (read here only to scrub them out)."""
    from agent.publish.credentials import credential_path

    paths: list[Path] = []
    m = cfg.mqtt
    if m.password_file is not None:
        paths.append(m.password_file)
    for cred in (m.password_credential, *(k.credential for k in m.commands.keys if k.alg == "hmac-sha256")):
        if cred:
            try:
                paths.append(credential_path(cred))
            except LewsError:
                continue
    paths.extend(k.file for k in m.commands.keys if k.alg == "hmac-sha256" and k.file is not None)
    if m.tls.key_file is not None:
        paths.append(m.tls.key_file)
    out: list[str] = []
    for p in paths:
        try:
            text = Path(p).read_text("utf-8", errors="replace")
        except OSError:
            continue
        out.extend(line.strip() for line in text.splitlines() if len(line.strip()) >= 4)
        if len(text.strip()) >= 4:
            out.append(text.strip())
    return sorted(set(out), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, REDACTED)
    return text


def store_stats(cfg: AgentConfig) -> dict[str, Any]:
    path = cfg.store.path
    if not path.is_file():
        return {"path": str(path), "exists": False}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = conn.execute(
                "SELECT c.name, COUNT(*), MIN(s.t), MAX(s.t) FROM samples s JOIN channels c "
                "ON c.id = s.channel_id GROUP BY c.name ORDER BY c.name"
            ).fetchall()
            steps = conn.execute("SELECT step_s, COUNT(*) FROM steps GROUP BY step_s").fetchall()
            counters = conn.execute("SELECT scope, name, value FROM counters").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return {"path": str(path), "exists": True, "error": str(exc)}
    by_scope: dict[str, dict[str, int]] = {}
    for scope, name, value in counters:
        by_scope.setdefault(str(scope), {})[str(name)] = int(value)
    return {
        "path": str(path),
        "exists": True,
        "bytes": path.stat().st_size,
        "channels": {n: {"samples": c, "t_min": lo, "t_max": hi} for n, c, lo, hi in rows},
        "steps": {str(s): int(c) for s, c in steps},
        "counters": by_scope,
    }


def recent_logs() -> tuple[str, str]:
    """(log text, where it came from or why there is none)."""
    exe = shutil.which("journalctl")
    if exe is None:
        return "", "journalctl not installed: no logs collected"
    try:
        proc = subprocess.run(
            [exe, "-u", "lews-agent", "-n", str(LOG_LINES), "--no-pager", "-o", "short-iso-precise"],
            capture_output=True,
            text=True,
            timeout=JOURNAL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"journalctl failed: {exc}"
    if proc.returncode != 0:
        first = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        return "", f"journalctl failed (exit {proc.returncode}): {first[0] if first else ''}"
    return proc.stdout, f"journalctl -u lews-agent -n {LOG_LINES}"


def write_archive(out: Path, *, config_path: Path, ctx: Context | None, diagnose: dict[str, Any]) -> Path:
    """Write the tar.gz; returns its path. Without a loadable config, only diagnose + logs go in."""
    members: dict[str, str] = {}
    notes: dict[str, str] = {}
    secrets: list[str] = []
    if ctx is not None:
        cfg = ctx.cfg
        secrets = secret_values(cfg)
        members["config.json"] = json.dumps(redact(cfg.model_dump(mode="json")), indent=1)
        status, _ = read_status_file(cfg)
        if status is not None:
            members["status.json"] = json.dumps(status, indent=1, default=str)
        else:
            notes["status.json"] = "no readable status.json (daemon never ran with this state_dir)"
        members["store-stats.json"] = json.dumps(store_stats(cfg), indent=1)
    else:
        notes["config.json"] = f"{config_path} did not load (see diagnose.json)"
    members["diagnose.json"] = json.dumps(diagnose, indent=1, default=str)
    logs, source = recent_logs()
    members["logs.txt"] = logs or f"no logs: {source}\n"
    notes["logs.txt"] = source
    members["manifest.json"] = json.dumps(
        {
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "members": sorted(members),
            "notes": notes,
        },
        indent=1,
    )
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as tar:
            for name, text in members.items():
                data = scrub(text, secrets).encode("utf-8")
                info = tarfile.TarInfo(f"lews-support/{name}")
                info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
                tar.addfile(info, io.BytesIO(data))
    except OSError as exc:
        raise SupportArchiveError(
            f"support archive {out} cannot be written: {exc}", fix="choose a writable path with free space"
        ) from exc
    out.chmod(0o600)
    log.info("support archive written to %s", out)
    return out
