"""No insecure default: no bundle key is trusted unless configured; `agent diagnose` fails a
production config that trusts the demo key (compared by key bytes), and the demo says it uses it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import config_from_dict
from agent.diagnose import checks_bundle
from agent.diagnose.model import Context, Status
from agent.inference.manager import ModelManager
from agent.inference.settings import DEMO_BUNDLE, DEMO_PUBLIC_KEY, InferenceSettings
from agent.inference.verify import load_public_key, public_key_sha256

REPO = Path(__file__).resolve().parent.parent


def _ctx(tmp_path: Path, public_key: Path | None, cap_status: str = "Actual") -> Context:
    inference: dict[str, Any] = {"bundle_dir": str(DEMO_BUNDLE)}
    if public_key is not None:
        inference["public_key"] = str(public_key)
    return Context(
        config_from_dict(
            {
                "daemon": {"state_dir": str(tmp_path / "state")},
                "inference": inference,
                "mqtt": {"outbox": {"path": str(tmp_path / "o.sqlite")}, "cap": {"status": cap_status}},
            }
        )
    )


def test_there_is_no_default_key_and_nothing_is_trusted_without_one(tmp_path: Path) -> None:
    settings = InferenceSettings()
    assert settings.public_key is None
    manager = ModelManager(settings.model_copy(update={"bundle_dir": DEMO_BUNDLE}))
    try:
        status = manager.start()
    finally:
        manager.close()
    assert status["mode"] == "rules_only"
    assert any("inference.public_key" in r for r in status["fallback_reasons"]), status
    res = checks_bundle.trust(_ctx(tmp_path, None))
    assert res.status == Status.FAIL and "no bundle public key" in res.value


def test_diagnose_fails_a_production_config_trusting_the_demo_key_wherever_the_file_lies(
    tmp_path: Path,
) -> None:
    copied = tmp_path / "etc" / "signing.pub"  # the demo key under another name: bytes decide
    copied.parent.mkdir()
    shutil.copy(DEMO_PUBLIC_KEY, copied)
    copied.chmod(0o644)
    for key in (DEMO_PUBLIC_KEY, copied):
        res = checks_bundle.trust(_ctx(tmp_path, key))
        assert res.status == Status.FAIL, res
        assert "DEMO signing key" in res.value and res.fix
    # a demo / test config may use it, and is told so
    res = checks_bundle.trust(_ctx(tmp_path, copied, cap_status="Test"))
    assert res.status == Status.PASS and "DEMO" in res.value
    assert public_key_sha256(load_public_key(DEMO_PUBLIC_KEY)) == checks_bundle.DEMO_KEY_SHA256


def test_diagnose_passes_a_sites_own_key(tmp_path: Path) -> None:
    own = tmp_path / "own.pub"
    own.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    own.chmod(0o644)
    res = checks_bundle.trust(_ctx(tmp_path, own))
    assert res.status == Status.PASS and "DEMO" not in res.value


def test_the_demo_config_names_the_demo_key_and_is_not_a_production_config(tmp_path: Path) -> None:
    from agent.demo.run import demo_config_data

    data = demo_config_data(tmp_path, "127.0.0.1", 1, "/dev/null", "/dev/null", speed=1.0)
    assert Path(data["inference"]["public_key"]) == DEMO_PUBLIC_KEY
    assert data["mqtt"]["cap"]["status"] == "Test"
    view_src = (REPO / "agent" / "demo" / "view.py").read_text(encoding="utf-8")
    assert "DEMO signing key" in view_src  # the live view's header says it
