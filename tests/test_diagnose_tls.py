"""broker.tls_expiry against a real mosquitto serving TLS with certificates made here (SYNTHETIC CA)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers.broker import Broker, free_port, running_broker
from helpers.site import diagnose_json, write_config

from agent.compat import UTC
from agent.demo.run import demo_config_data

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _cert(days: float, tmp: Path) -> tuple[Path, Path, Path]:
    now = dt.datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lews test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = tmp / "ca.pem", tmp / "server.pem", tmp / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture(params=[400.0, 10.0], ids=["valid", "expiring"])
def tls_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Broker, Path, float]]:
    ca, cert, key = _cert(request.param, tmp_path)
    port = free_port()
    settings = (
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n"
    )
    with running_broker(tmp_path, "tls", port, settings) as broker:
        yield broker, ca, request.param


def test_tls_expiry(tls_broker: tuple[Broker, Path, float], tmp_path: Path) -> None:
    broker, ca, days = tls_broker
    data = demo_config_data(tmp_path, broker.host, broker.port, "/dev/null", "/dev/null", 1.0)
    data["sensors"]["ports"] = []
    data["mqtt"]["tls"] = {"enabled": True, "ca_file": str(ca)}
    config = write_config(tmp_path / "agent.toml", data)
    rc, checks = diagnose_json(config, "--only", "broker")
    assert checks["broker.connect"]["status"] == "PASS", checks  # CA and host name verified
    assert "(TLS)" in checks["broker.connect"]["value"]
    assert checks["broker.roundtrip"]["status"] == "PASS"
    tls = checks["broker.tls_expiry"]
    if days > 30:
        assert tls["status"] == "PASS" and rc == 0
        assert "broker 399 d" in tls["value"] or "broker 400 d" in tls["value"], tls
    else:
        assert tls["status"] == "WARN" and rc == 1
        assert "broker certificate expires in" in tls["value"] and "renew" in tls["fix"]
