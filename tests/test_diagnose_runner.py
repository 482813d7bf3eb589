"""The check runner (time bounds, failures, selection), the context memo, redaction of the archive."""

from __future__ import annotations

import tarfile
import threading
import time
from pathlib import Path

from agent.config import config_from_dict
from agent.diagnose.archive import redact, scrub, secret_values, write_archive
from agent.diagnose.model import Check, Context, Options, Result, Status, passed, warned
from agent.diagnose.runner import run_checks, select, worst
from agent.errors import BundleError


def _ctx(tmp_path: Path, **mqtt: object) -> Context:
    cfg = config_from_dict(
        {"daemon": {"state_dir": str(tmp_path / "state")}, "store": {"path": str(tmp_path / "s.sqlite")},
         "mqtt": {"outbox": {"path": str(tmp_path / "o.sqlite")}, **mqtt}}
    )  # fmt: skip
    return Context(cfg, options=Options(listen_s=0.1))


def test_a_hanging_check_fails_at_its_timeout_and_the_others_finish(tmp_path: Path) -> None:
    release = threading.Event()

    def hang(ctx: Context) -> Result:
        release.wait(30)
        return passed("hang", "late")

    checks = [
        Check("hang", hang, timeout_s=0.5),
        Check("ok", lambda ctx: passed("ok", "fine"), timeout_s=5),
        Check("boom", lambda ctx: 1 / 0, timeout_s=5),  # type: ignore[arg-type,return-value]
        Check("typed", lambda ctx: (_ for _ in ()).throw(BundleError("bundle x bad", fix="copy it")), 5),
    ]
    t0 = time.monotonic()
    res = {r.name: r for r in run_checks(checks, _ctx(tmp_path))}
    release.set()
    assert time.monotonic() - t0 < 3.0
    assert res["hang"].status == Status.FAIL and "did not finish within 0.5 s" in res["hang"].value
    assert res["ok"].status == Status.PASS
    assert res["boom"].status == Status.FAIL and "ZeroDivisionError" in res["boom"].value
    assert res["typed"].status == Status.FAIL and res["typed"].fix == "copy it"
    assert worst(list(res.values())) == Status.FAIL


def test_overall_timeout_bounds_everything(tmp_path: Path) -> None:
    def slow(ctx: Context) -> Result:
        time.sleep(5)
        return passed("slow", "late")

    checks = [Check(f"slow{i}", slow, 10) for i in range(3)]
    t0 = time.monotonic()
    res = run_checks(checks, _ctx(tmp_path), timeout_s=0.5)
    assert time.monotonic() - t0 < 2.0
    assert all(r.status == Status.FAIL for r in res)


def test_select_by_name_and_prefix() -> None:
    table = [
        Check(n, lambda ctx: passed("x", "x"))
        for n in ("config", "serial.gnss", "serial.bridge", "gnss.g.fix")
    ]
    assert [c.name for c in select(table, only=["serial"])] == ["serial.gnss", "serial.bridge"]
    assert [c.name for c in select(table, skip=["serial.bridge", "gnss"])] == ["config", "serial.gnss"]
    assert [c.name for c in select(table, only=["config", "gnss.g"])] == ["config", "gnss.g.fix"]


def test_worst_is_warn_without_fail() -> None:
    assert worst([passed("a", "x"), warned("b", "y", "z")]) == Status.WARN
    assert worst([]) == Status.PASS


def test_memo_computes_once_under_concurrency(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    out: list[int] = []
    threads = [threading.Thread(target=lambda: out.append(ctx.memo("k", slow))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [42] * 5 and len(calls) == 1


def test_redact_keys_and_scrub_values(tmp_path: Path) -> None:
    tree = {"mqtt": {"password": "x", "password_file": "/etc/p", "nested": [{"api_token": "t"}]}}
    assert redact(tree) == {
        "mqtt": {"password": "<redacted>", "password_file": "/etc/p", "nested": [{"api_token": "<redacted>"}]}
    }
    pw = tmp_path / "pw"
    pw.write_text("s3cret-value\n")
    pw.chmod(0o600)
    ctx = _ctx(tmp_path, username="u", password_file=str(pw))
    secrets = secret_values(ctx.cfg)
    assert "s3cret-value" in secrets
    assert scrub("login u:s3cret-value ok", secrets) == "login u:<redacted> ok"


def test_archive_without_a_daemon_or_store(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("another-secret-42\n")
    pw.chmod(0o600)
    ctx = _ctx(tmp_path, username="u", password_file=str(pw))
    doc = {"checks": [{"name": "x", "status": "PASS", "value": "leaked another-secret-42", "fix": ""}]}
    out = write_archive(tmp_path / "a.tar.gz", config_path=tmp_path / "agent.toml", ctx=ctx, diagnose=doc)
    assert out.stat().st_mode & 0o077 == 0
    with tarfile.open(out) as tar:
        texts = {Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert "another-secret-42" not in "".join(texts.values())
    assert "<redacted>" in texts["diagnose.json"]
    assert '"exists": false' in texts["store-stats.json"]
    assert "status.json" in texts["manifest.json"]  # noted as missing, with the reason


def test_daemon_check_reads_the_status_file(tmp_path: Path) -> None:
    import json
    import os

    from agent.diagnose.checks_config import daemon

    ctx = _ctx(tmp_path)
    assert daemon(ctx).status == Status.PASS and "no " in daemon(ctx).value  # never ran: reported
    assert Context(ctx.cfg, options=Options(expect_daemon=True)).daemon_running is False
    assert daemon(Context(ctx.cfg, options=Options(expect_daemon=True))).status == Status.FAIL
    state = tmp_path / "state"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"version": "x", "loops": {}, "fatal": None}))
    fresh = Context(ctx.cfg)
    assert fresh.daemon_running and daemon(fresh).value.startswith("running")
    old = time.time() - 600
    os.utime(state / "status.json", (old, old))
    stale = Context(ctx.cfg)
    assert not stale.daemon_running and "10 min old" in daemon(stale).value
    (state / "status.json").write_text(json.dumps({"fatal": "evaluate loop failed 6 times in a row"}))
    res = daemon(Context(ctx.cfg))
    assert res.status == Status.FAIL and "evaluate loop failed" in res.value


def test_diagnose_section_defaults_and_validation() -> None:
    from types import SimpleNamespace

    import pytest
    from pydantic import ValidationError

    from agent.config import DiagnoseSettings, diagnose_settings

    assert diagnose_settings(object()) == DiagnoseSettings()  # config without a [diagnose] section
    mine = DiagnoseSettings(skip=["system.clock"], listen_s=5.0)
    assert diagnose_settings(SimpleNamespace(diagnose=mine)) is mine
    with pytest.raises(ValidationError):
        DiagnoseSettings(listen_s=0)
    with pytest.raises(ValidationError):
        DiagnoseSettings.model_validate({"skipp": ["x"]})  # typo: rejected, not ignored
