"""Signed cmd/ messages: HMAC-SHA256 and Ed25519, freshness, replay, rate limit, secrets never logged."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import CommandRejected, PublishError
from agent.publish.commands import AckRequest, CommandVerifier, load_key, sign_command
from agent.publish.credentials import Secret, read_secret
from agent.publish.settings import CommandKey, CommandSettings

T0 = 1_763_800_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def hmac_key(tmp_path: Path) -> tuple[bytes, Path]:
    key = secrets.token_bytes(32)
    path = tmp_path / "ops1.key"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key, path


def verifier(clock: Clock, hmac_path: Path, ed_pub: Path | None = None, **kw: float) -> CommandVerifier:
    keys = [CommandKey(key_id="ops1", file=hmac_path, commands=["ack", "ping"])]
    if ed_pub is not None:
        keys.append(CommandKey(key_id="ops2", alg="ed25519", file=ed_pub, commands=["ack"]))
    cfg = CommandSettings(keys=keys, **kw)  # type: ignore[arg-type]
    return CommandVerifier.from_settings(cfg, clock=clock)


def raw(doc: dict[str, object]) -> bytes:
    return json.dumps(doc).encode()


def test_hmac_command_accepted_once_then_replay_rejected(
    tmp_path: Path, hmac_key: tuple[bytes, Path]
) -> None:
    clock = Clock()
    v = verifier(clock, hmac_key[1])
    doc = sign_command("ack", {"alert_id": "a1", "by": "tech"}, key_id="ops1", hmac_key=hmac_key[0], t=T0 - 5)
    cmd = v.verify("ack", raw(doc))
    assert (cmd.name, cmd.key_id, cmd.args["alert_id"]) == ("ack", "ops1", "a1")
    with pytest.raises(CommandRejected) as err:
        v.verify("ack", raw(doc))
    assert err.value.reason == "replay"
    assert v.counters()["accepted"] == 1 and v.rejected["replay"] == 1


def test_ed25519_command_accepted_and_forgery_rejected(tmp_path: Path, hmac_key: tuple[bytes, Path]) -> None:
    priv = Ed25519PrivateKey.generate()
    pub = tmp_path / "ops2.pub"
    pub.write_bytes(
        priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    pub.chmod(0o644)  # a public key may be world-readable
    clock = Clock()
    v = verifier(clock, hmac_key[1], pub)
    doc = sign_command("ack", {"alert_id": "a2"}, key_id="ops2", ed25519_key=priv, t=T0)
    assert v.verify("ack", raw(doc)).key_id == "ops2"
    other = Ed25519PrivateKey.generate()
    forged = sign_command("ack", {"alert_id": "a2"}, key_id="ops2", ed25519_key=other, t=T0)
    with pytest.raises(CommandRejected) as err:
        v.verify("ack", raw(forged))
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("mutate", "topic", "reason"),
    [
        (lambda d: d.update(args={"alert_id": "zzz"}), "ack", "bad_signature"),  # tampered after signing
        (lambda d: d.update(sig="00" * 32), "ack", "bad_signature"),
        (lambda d: d.update(key_id="nobody"), "ack", "unknown_key"),
        (lambda d: d.update(alg="ed25519"), "ack", "bad_signature"),
        (lambda d: d.pop("nonce"), "ack", "malformed"),
        (lambda d: d.update(extra=1), "ack", "malformed"),
        (lambda d: None, "ping", "topic_mismatch"),
    ],
)
def test_rejections(hmac_key: tuple[bytes, Path], mutate: object, topic: str, reason: str) -> None:
    v = verifier(Clock(), hmac_key[1])
    doc = sign_command("ack", {"alert_id": "a1"}, key_id="ops1", hmac_key=hmac_key[0], t=T0)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(CommandRejected) as err:
        v.verify(topic, raw(doc))
    assert err.value.reason == reason
    assert v.rejected[reason] == 1 and v.accepted == 0


def test_garbage_and_oversize(hmac_key: tuple[bytes, Path]) -> None:
    v = verifier(Clock(), hmac_key[1])
    for payload, reason in ((b"\xff\xfe", "malformed"), (b"[1,2]", "malformed"), (b"x" * 5000, "too_large")):
        with pytest.raises(CommandRejected) as err:
            v.verify("ack", payload)
        assert err.value.reason == reason


def test_stale_and_future_timestamps(hmac_key: tuple[bytes, Path]) -> None:
    clock = Clock()
    v = verifier(clock, hmac_key[1], max_skew_s=60)
    # old beyond max_skew_s: stale; ahead beyond max_future_s (10 s): future (issue 13: +100 s passed)
    for dt, reason in ((-61, "stale"), (+61, "future"), (+100, "future"), (+11, "future")):
        doc = sign_command("ack", {}, key_id="ops1", hmac_key=hmac_key[0], t=T0 + dt)
        with pytest.raises(CommandRejected) as err:
            v.verify("ack", raw(doc))
        assert err.value.reason == reason, dt
    assert v.verify("ack", raw(sign_command("ack", {}, key_id="ops1", hmac_key=hmac_key[0], t=T0 - 59)))
    assert v.verify("ack", raw(sign_command("ack", {}, key_id="ops1", hmac_key=hmac_key[0], t=T0 + 9)))


def test_not_authorised_command(tmp_path: Path, hmac_key: tuple[bytes, Path]) -> None:
    v = verifier(Clock(), hmac_key[1])
    doc = sign_command("reboot", {}, key_id="ops1", hmac_key=hmac_key[0], t=T0)
    with pytest.raises(CommandRejected) as err:
        v.verify("reboot", raw(doc))
    assert err.value.reason == "not_authorised"


def test_rate_limit_per_key_and_refill(hmac_key: tuple[bytes, Path]) -> None:
    clock = Clock()
    v = verifier(clock, hmac_key[1], rate_per_min=6, burst=3)
    ok = 0
    for _ in range(5):
        try:
            v.verify("ping", raw(sign_command("ping", {}, key_id="ops1", hmac_key=hmac_key[0], t=clock.t)))
            ok += 1
        except CommandRejected as exc:
            assert exc.reason == "rate_limited"
    assert ok == 3 and v.rejected["rate_limited"] == 2
    clock.t += 10  # 6/min -> one token per 10 s
    assert v.verify("ping", raw(sign_command("ping", {}, key_id="ops1", hmac_key=hmac_key[0], t=clock.t)))


def test_unauthenticated_flood_is_cut_before_signature_checks(hmac_key: tuple[bytes, Path]) -> None:
    v = verifier(Clock(), hmac_key[1], rate_per_min=6, burst=3)
    reasons = []
    for _ in range(200):
        with pytest.raises(CommandRejected) as err:
            v.verify("ack", b'{"cmd": "ack"}')
        reasons.append(err.value.reason)
    assert reasons.count("flood") > 100 and v.rejected["malformed"] >= 60


def test_rejections_logged_without_secrets(
    caplog: pytest.LogCaptureFixture, hmac_key: tuple[bytes, Path]
) -> None:
    v = verifier(Clock(), hmac_key[1])
    doc = sign_command("ack", {"alert_id": "a1"}, key_id="ops1", hmac_key=hmac_key[0], t=T0)
    good_sig = doc["sig"]
    doc["args"] = {"alert_id": "evil"}
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(CommandRejected):
            v.verify("ack", raw(doc))
        ok = sign_command("ack", {}, key_id="ops1", hmac_key=hmac_key[0], t=T0)
        v.verify("ack", raw(ok))
    text = caplog.text
    assert "rejected (bad_signature)" in text and "accepted from key ops1" in text
    for secret in (hmac_key[0].hex(), str(good_sig), str(ok["sig"]), str(ok["nonce"])):
        assert secret not in text


def test_key_files_must_be_private_and_long(tmp_path: Path) -> None:
    weak = tmp_path / "weak.key"
    weak.write_text("abcd")
    weak.chmod(0o600)
    with pytest.raises(PublishError, match="at least 32 bytes"):
        load_key(CommandKey(key_id="k", file=weak))
    public = tmp_path / "public.key"
    public.write_text(secrets.token_hex(32))
    public.chmod(0o644)
    with pytest.raises(PublishError, match="readable or writable by every user") as err:
        load_key(CommandKey(key_id="k", file=public))
    assert "chmod 600" in err.value.fix
    with pytest.raises(PublishError, match="cannot be read"):
        load_key(CommandKey(key_id="k", file=tmp_path / "missing"))
    with pytest.raises(ValueError):
        CommandKey(key_id="k")  # neither file nor credential


def test_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret-pw\n")
    (creds / "mqtt-password").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    secret = read_secret(credential="mqtt-password", what="MQTT password")
    assert secret.reveal() == b"s3cret-pw"
    assert "s3cret" not in repr(secret) and "s3cret" not in f"{secret}" and secret == Secret(b"s3cret-pw")
    with pytest.raises(PublishError, match="plain name"):
        read_secret(credential="../etc/passwd", what="x")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(PublishError, match="CREDENTIALS_DIRECTORY") as err:
        read_secret(credential="mqtt-password", what="MQTT password")
    assert "LoadCredential" in err.value.fix
    assert os.environ.get("CREDENTIALS_DIRECTORY") is None


def test_ack_request_arguments(hmac_key: tuple[bytes, Path]) -> None:
    v = verifier(Clock(), hmac_key[1], burst=10)

    def cmd(args: dict[str, object]) -> AckRequest:
        return AckRequest.from_command(
            v.verify("ack", raw(sign_command("ack", args, key_id="ops1", hmac_key=hmac_key[0], t=T0)))
        )

    req = cmd({"alert_id": "urbas-1", "note": "crew on site"})
    assert (req.alert_id, req.by, req.note) == ("urbas-1", "ops1", "crew on site")  # by defaults to key id
    assert cmd({"alert_id": "urbas-1", "by": " maria "}).by == "maria"
    bad_args: list[dict[str, object]] = [
        {},
        {"alert_id": 3},
        {"alert_id": "a", "by": ""},
        {"alert_id": "a", "note": "x" * 600},
    ]
    for bad in bad_args:
        with pytest.raises(PublishError):
            cmd(bad)


FUZZ_CASES = 400
_FUZZ_VERIFIERS: dict[Path, CommandVerifier] = {}


@given(
    payload=st.one_of(
        st.binary(max_size=600),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=40),
            lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=6),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "cmd": st.sampled_from(["ack", "ping", "x"]),
                "args": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                "ts": st.text(max_size=30),
                "nonce": st.text(min_size=16, max_size=20),
                "key_id": st.sampled_from(["ops1", "nobody"]),
                "alg": st.sampled_from(["hmac-sha256", "ed25519", "none"]),
                "sig": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
            }
        ).map(lambda d: json.dumps(d).encode()),
    ),
    topic=st.sampled_from(["ack", "ping", "reboot"]),
)
@settings(max_examples=FUZZ_CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_untrusted_commands_are_rejected_never_crash(
    hmac_key: tuple[bytes, Path], payload: bytes, topic: str
) -> None:
    """Hypothesis: arbitrary bytes, arbitrary JSON and well-formed but unsigned commands are always a
    counted CommandRejected, never another exception and never accepted."""
    v = verifier(Clock(), hmac_key[1], rate_per_min=6000, burst=1000)
    with pytest.raises(CommandRejected) as err:
        v.verify(topic, payload)
    assert err.value.reason in {
        "too_large",
        "flood",
        "malformed",
        "topic_mismatch",
        "unknown_key",
        "bad_signature",
    }
    assert v.accepted == 0 and sum(v.rejected.values()) == 1
