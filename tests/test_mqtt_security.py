"""TLS (verification on with a CA, mutual TLS), username/password from files, secrets never in logs,
against real mosquitto instances configured by the test."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers.broker import Broker, free_port, running_broker
from helpers.wait import wait_until
from pydantic import ValidationError

from agent.compat import UTC
from agent.errors import PublishError
from agent.publish.publisher import Publisher
from agent.publish.settings import MqttSettings
from agent.publish.watch import TopicWatcher

SITE, NODE = "urbas", "gw-3"
PASSWORD = "Zq8-very-secret-broker-pw"


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def make_ca(d: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def make_leaf(
    d: Path,
    name: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    sans: list[x509.GeneralName] | None = None,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                sans or [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca[1], hashes.SHA256())
    )
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, d / f"{name}.key")


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[Broker, int, Path]]:
    """mosquitto with a TLS listener (client certs required), a password-protected plain listener and an
    anonymous plain listener for the test's subscriber. Returns (broker, tls_port, pki_dir)."""
    pki = tmp_path / "pki"
    pki.mkdir()
    ca = make_ca(pki, "ca")
    make_ca(pki, "other-ca")
    make_leaf(pki, "server", ca)
    make_leaf(pki, "client", ca)
    pw = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pw), "agent", PASSWORD], check=True, capture_output=True
    )
    tls_port, auth_port, open_port = free_port(), free_port(), free_port()
    settings = (
        "per_listener_settings true\n"
        f"listener {tls_port} 127.0.0.1\nallow_anonymous true\ncafile {pki}/ca.pem\n"
        f"certfile {pki}/server.pem\nkeyfile {pki}/server.key\nrequire_certificate true\n"
        f"listener {auth_port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n"
        f"listener {open_port} 127.0.0.1\nallow_anonymous true\n"
    )
    with running_broker(tmp_path, "secure", auth_port, settings) as broker:
        broker.open_port = open_port  # type: ignore[attr-defined]
        yield broker, tls_port, pki


def publisher(tmp_path: Path, **kw: Any) -> Publisher:
    settings = MqttSettings.model_validate(
        {"outbox": {"path": str(tmp_path / "o.sqlite")}, "reconnect_max_s": 1, **kw}
    )
    return Publisher(settings, site=SITE, node=NODE, agent_version="0.1.0")


def _deliver_one(pub: Publisher, watch: TopicWatcher) -> None:
    now = time.time()
    pub.publish_telemetry("rain", {"rain.mm": 0.4}, window_start=now, window_end=now, completeness=1.0)
    msgs = watch.wait_for(lambda m: any("/telemetry/" in x.topic for x in m), 10)
    assert any("/telemetry/" in x.topic for x in msgs)


def test_mutual_tls_with_ca_verification(tmp_path: Path, secure_broker: tuple[Broker, int, Path]) -> None:
    broker, tls_port, pki = secure_broker
    tls = {"enabled": True, "ca_file": str(pki / "ca.pem"), "cert_file": str(pki / "client.pem"),
           "key_file": str(pki / "client.key")}  # fmt: skip
    with TopicWatcher("127.0.0.1", broker.open_port) as watch:  # type: ignore[attr-defined]
        pub = publisher(tmp_path, port=tls_port, tls=tls)
        pub.start()
        try:
            assert pub.link.connected.wait(10), pub.stats()
            _deliver_one(pub, watch)
        finally:
            pub.stop()


def test_wrong_ca_never_connects_and_keeps_messages(
    tmp_path: Path, secure_broker: tuple[Broker, int, Path]
) -> None:
    _broker, tls_port, pki = secure_broker
    tls = {"enabled": True, "ca_file": str(pki / "other-ca.pem"), "cert_file": str(pki / "client.pem"),
           "key_file": str(pki / "client.key")}  # fmt: skip
    pub = publisher(tmp_path, port=tls_port, tls=tls)
    now = time.time()
    pub.publish_telemetry("rain", {"rain.mm": 0.4}, window_start=now, window_end=now, completeness=1.0)
    pub.start()
    try:
        wait_until(lambda: pub.stats()["link"].get("connect_failures", 0) >= 1, 30, "a failed TLS connect")
        assert not pub.link.connected.is_set()
        st = pub.stats()
        assert st["outbox"]["depth"] == 1 and st["outbox"]["sent"] == 0
    finally:
        pub.stop()


def test_host_name_is_verified(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A certificate from the right CA but for another host name is refused (verification is on)."""
    pki = tmp_path / "pki2"
    pki.mkdir()
    ca = make_ca(pki, "ca")
    make_leaf(pki, "server", ca, sans=[x509.DNSName("broker.elsewhere.example")])
    port = free_port()
    settings = (
        f"listener {port} 127.0.0.1\nallow_anonymous true\ncafile {pki}/ca.pem\n"
        f"certfile {pki}/server.pem\nkeyfile {pki}/server.key\n"
    )
    with running_broker(tmp_path, "tls-wrong-name", port, settings):
        pub = publisher(tmp_path, port=port, tls={"enabled": True, "ca_file": str(pki / "ca.pem")})
        pub.start()
        try:
            wait_until(lambda: pub.stats()["link"].get("connect_failures", 0) >= 1, 30, "a refused host name")
            assert not pub.link.connected.is_set()
            pub.stop()
            # only the explicit, logged opt-out connects to it
            with caplog.at_level(logging.WARNING):
                pub = publisher(tmp_path / "insecure", port=port, tls={"enabled": True, "insecure": True})
            assert "TLS verification of broker 127.0.0.1 is DISABLED" in caplog.text
            pub.start()
            assert pub.link.connected.wait(10)
        finally:
            pub.stop()


def test_tls_settings_refuse_unsafe_combinations(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="a configured CA is always verified"):
        MqttSettings.model_validate({"tls": {"enabled": True, "ca_file": "/x", "insecure": True}})
    with pytest.raises(ValidationError, match="together"):
        MqttSettings.model_validate({"tls": {"enabled": True, "cert_file": "/x"}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        MqttSettings.model_validate({"tls": {"verify": False}})
    assert MqttSettings.model_validate({"tls": {"enabled": True}}).effective_port == 8883


def test_world_readable_client_key_refused(tmp_path: Path, secure_broker: tuple[Broker, int, Path]) -> None:
    _broker, tls_port, pki = secure_broker
    (pki / "client.key").chmod(0o644)
    tls = {"enabled": True, "ca_file": str(pki / "ca.pem"), "cert_file": str(pki / "client.pem"),
           "key_file": str(pki / "client.key")}  # fmt: skip
    with pytest.raises(PublishError, match="TLS client key"):
        publisher(tmp_path, port=tls_port, tls=tls)


def test_password_auth_and_no_secret_in_logs(
    tmp_path: Path, secure_broker: tuple[Broker, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    broker, _tls_port, _pki = secure_broker
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text(PASSWORD + "\n")
    pw_file.chmod(0o600)
    with caplog.at_level(logging.DEBUG), TopicWatcher("127.0.0.1", broker.open_port) as watch:  # type: ignore[attr-defined]
        pub = publisher(tmp_path, port=broker.port, username="agent", password_file=str(pw_file))
        pub.start()
        try:
            assert pub.link.connected.wait(10)
            _deliver_one(pub, watch)
            text = caplog.text + repr(pub.settings) + repr(pub.stats()) + str(pub.settings.model_dump())
        finally:
            pub.stop()
    assert "Sending CONNECT" in caplog.text  # paho's debug log was captured ...
    assert PASSWORD not in text and PASSWORD not in caplog.text  # ... without the password


def test_wrong_password_is_refused_and_messages_wait(
    tmp_path: Path, secure_broker: tuple[Broker, int, Path]
) -> None:
    broker, _tls_port, _pki = secure_broker
    pw_file = tmp_path / "mqtt-password"
    pw_file.write_text("wrong\n")
    pw_file.chmod(0o600)
    pub = publisher(tmp_path, port=broker.port, username="agent", password_file=str(pw_file))
    now = time.time()
    pub.publish_wire(1, changed_at=now, level=3)
    pub.start()
    try:
        wait_until(
            lambda: pub.stats()["link"].get("connect_refused", 0) >= 1, 30, "the broker refusing the password"
        )
        assert not pub.link.connected.is_set()
        assert pub.outbox.depth == 1
    finally:
        pub.stop()


def test_plaintext_password_to_remote_host_refused(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("x\n")
    pw_file.chmod(0o600)
    with pytest.raises(PublishError, match="without TLS") as err:
        publisher(tmp_path, host="192.0.2.10", username="agent", password_file=str(pw_file))
    assert "tls" in err.value.fix
    pw_file.chmod(0o644)
    with pytest.raises(PublishError, match="readable or writable by every user"):
        publisher(tmp_path, username="agent", password_file=str(pw_file))
