"""The broker: connect, publish/subscribe round trip on a private topic under this node's tree, and the
expiry of the TLS certificates involved (broker's, client's, CA file) when TLS is configured.

The connection uses the agent's own TLS and password set-up (agent.publish.transport), with its own
client id (``lews-diag-...``) so the daemon's session is not disturbed.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from agent.diagnose.model import Context, Result, Status, failed, not_measured, passed, warned
from agent.errors import LewsError
from agent.publish.topics import base_topic
from agent.publish.transport import configure_tls, load_password

ROUNDTRIP_WARN_S = 1.0
CERT_WARN_DAYS = 30.0


class _Probe:
    def __init__(self, ctx: Context) -> None:
        s = ctx.cfg.mqtt
        self.settings = s
        self.topic = f"{base_topic(ctx.cfg.site.site, ctx.cfg.site.node)}/diag/{uuid.uuid4().hex[:12]}"
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.received = threading.Event()
        self.rc: str = ""
        proto = mqtt.MQTTv5 if s.protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"lews-diag-{uuid.uuid4().hex[:10]}",
            protocol=proto,
            clean_session=True if proto == mqtt.MQTTv311 else None,
        )
        if s.username is not None:
            self.client.username_pw_set(s.username, load_password(s))
        if s.tls.enabled:
            configure_tls(self.client, s)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = lambda *_a: self.received.set()

    def _on_connect(self, _c: mqtt.Client, _u: object, _f: object, rc: object, _p: object) -> None:
        self.rc = str(rc)
        if not getattr(rc, "is_failure", False):
            self.connected.set()


def _roundtrip(ctx: Context) -> dict[str, object]:
    """Connect, subscribe, publish, wait for our own message; times in seconds (None: did not happen)."""
    s = ctx.cfg.mqtt
    timeout = ctx.options.roundtrip_timeout_s
    out: dict[str, object] = {
        "host": s.host,
        "port": s.effective_port,
        "connect_s": None,
        "roundtrip_s": None,
    }
    p = _Probe(ctx)
    t0 = time.monotonic()
    try:
        p.client.connect(s.host, s.effective_port, keepalive=10)
    except (OSError, ssl.SSLError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    p.client.loop_start()
    try:
        if not p.connected.wait(timeout):
            out["error"] = f"no CONNACK within {timeout:g} s ({p.rc or 'no answer'})"
            return out
        out["connect_s"] = time.monotonic() - t0
        p.client.subscribe(p.topic, qos=1)
        if not p.subscribed.wait(timeout):
            out["error"] = "subscription not acknowledged"
            return out
        t1 = time.monotonic()
        p.client.publish(p.topic, b'{"diagnose": true}', qos=1, retain=False)
        if p.received.wait(timeout):
            out["roundtrip_s"] = time.monotonic() - t1
        else:
            out["error"] = f"own message not received within {timeout:g} s (ACL denies {p.topic}?)"
        out["topic"] = p.topic
        return out
    finally:
        p.client.disconnect()
        p.client.loop_stop()


def roundtrip(ctx: Context) -> dict[str, object]:
    return ctx.memo("broker", lambda: _roundtrip(ctx))


def connect(ctx: Context) -> Result:
    name = "broker.connect"
    s = ctx.cfg.mqtt
    where = f"{s.host}:{s.effective_port}" + (" (TLS)" if s.tls.enabled else "")
    try:
        rt = roundtrip(ctx)
    except LewsError as exc:
        return failed(name, f"{where}: {exc.message}", exc.fix)
    if rt["connect_s"] is None:
        return failed(
            name,
            f"cannot connect to {where}: {rt.get('error')}",
            "start the broker / check mqtt.host, mqtt.port, the network and the firewall",
        )
    return passed(name, f"connected to {where} in {1000 * float(rt['connect_s']):.0f} ms")  # type: ignore[arg-type]


def publish_subscribe(ctx: Context) -> Result:
    name = "broker.roundtrip"
    try:
        rt = roundtrip(ctx)
    except LewsError:
        return not_measured(name, "broker.connect")
    if rt["connect_s"] is None:
        return not_measured(name, "broker.connect")
    if rt["roundtrip_s"] is None:
        return failed(
            name, str(rt.get("error")), "allow this node's user to publish/subscribe under its topic tree"
        )
    ms = 1000.0 * float(rt["roundtrip_s"])  # type: ignore[arg-type]
    text = f"publish -> subscribe {ms:.1f} ms on {rt.get('topic')}"
    if ms > 1000.0 * ROUNDTRIP_WARN_S:
        return warned(name, text, "slow link or overloaded broker")
    return passed(name, text)


def _days_left(not_after: dt.datetime, now: float) -> float:
    return (not_after.timestamp() - now) / 86400.0


def _cert_files(path: Path) -> list[dt.datetime]:
    from cryptography import x509

    data = path.read_bytes()
    return [c.not_valid_after_utc for c in x509.load_pem_x509_certificates(data)]


def _server_cert(host: str, port: int, timeout: float) -> dt.datetime:
    """Expiry of the certificate the broker presents (read only: verification is broker.connect's job)."""
    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("broker presented no certificate")
    return x509.load_der_x509_certificate(der).not_valid_after_utc


def tls_expiry(ctx: Context) -> Result:
    name = "broker.tls_expiry"
    s = ctx.cfg.mqtt
    if not s.tls.enabled:
        return passed(name, "not configured (mqtt.tls.enabled = false)")
    now = ctx.clock()
    found: dict[str, float] = {}
    try:
        for label, path in (("ca_file", s.tls.ca_file), ("cert_file", s.tls.cert_file)):
            if path is not None:
                found[label] = min(_days_left(d, now) for d in _cert_files(Path(path)))
    except (OSError, ValueError) as exc:
        return failed(name, f"cannot read a configured certificate: {exc}", "check mqtt.tls paths (PEM)")
    try:
        found["broker"] = _days_left(_server_cert(s.host, s.effective_port, 5.0), now)
    except (OSError, ssl.SSLError, ValueError) as exc:
        if connect(ctx).status == Status.FAIL:
            return not_measured(name, "broker.connect")
        return warned(name, f"broker certificate not read: {exc}", "check the broker serves TLS on this port")
    label = min(found, key=lambda k: found[k])
    days = found[label]
    text = ", ".join(f"{k} {v:.0f} d" for k, v in sorted(found.items()))
    if days < 0:
        return failed(name, f"{label} certificate EXPIRED ({text})", f"renew the {label} certificate now")
    if days < CERT_WARN_DAYS:
        return warned(
            name, f"{label} certificate expires in {days:.0f} days ({text})", f"renew the {label} certificate"
        )
    return passed(name, f"valid for {text}")
