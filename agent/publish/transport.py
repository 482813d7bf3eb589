"""Connection set-up for the MQTT link: password, TLS, loopback check, paho log noise, and the
pure marking of messages that waited in the outbox (historical)."""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.errors import PublishError
from agent.publish.credentials import read_secret
from agent.publish.outbox import OutboundMessage
from agent.publish.payloads import dumps, iso_z
from agent.publish.settings import MqttSettings

log = logging.getLogger(__name__)


class PahoNoise(logging.Filter):
    """paho 2.2 logs "Client is not connected" at ERROR whenever its loop runs between connections (broker
    down, our own shutdown). The link reports outages itself; keep that line for DEBUG only."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


PAHO_LOG = logging.getLogger("agent.publish.paho")
PAHO_LOG.addFilter(PahoNoise())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_password(s: MqttSettings) -> str | None:
    """The broker password from its file / systemd credential, or None; refuses unsafe set-ups."""
    if s.password_file is None and s.password_credential is None:
        return None
    if s.username is None:
        raise PublishError("mqtt password configured without a username", fix="set mqtt.username")
    if not s.tls.enabled and not is_loopback(s.host) and not s.allow_plaintext_password:
        raise PublishError(
            f"refusing to send the MQTT password to {s.host} without TLS",
            fix="enable [mqtt.tls] (recommended) or set mqtt.allow_plaintext_password = true",
        )
    secret = read_secret(file=s.password_file, credential=s.password_credential, what="MQTT password")
    return secret.reveal().decode("utf-8")


def configure_tls(client: mqtt.Client, settings: MqttSettings) -> None:
    """TLS on the paho client: verification on unless insecure is set explicitly."""
    tls = settings.tls
    if tls.key_file is not None:
        read_secret(file=tls.key_file, what="TLS client key")  # refuses world-readable keys
    try:
        if tls.insecure:
            log.warning("TLS verification of broker %s is DISABLED (mqtt.tls.insecure = true)", settings.host)
            client.tls_set(certfile=_s(tls.cert_file), keyfile=_s(tls.key_file), cert_reqs=ssl.CERT_NONE)
            client.tls_insecure_set(True)
        else:
            client.tls_set(
                ca_certs=_s(tls.ca_file),
                certfile=_s(tls.cert_file),
                keyfile=_s(tls.key_file),
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(False)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise PublishError(
            f"TLS files for the MQTT broker cannot be used: {exc}",
            fix="check mqtt.tls.ca_file / cert_file / key_file exist, are PEM and match",
        ) from exc


def mark_historical(msg: OutboundMessage, now: float, after_s: float) -> bytes | None:
    """The payload to send for a message that waited longer than ``after_s``: the JSON with
    ``historical: true``, ``original_time`` and ``queued_s`` added. None when it is sent as is
    (fresh, or not JSON)."""
    waited = now - msg.created
    if waited <= after_s or msg.content_type != "application/json":
        return None
    try:
        doc = json.loads(msg.payload)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    doc["historical"] = True
    doc["original_time"] = iso_z(msg.created)
    doc["queued_s"] = round(waited, 3)
    return dumps(doc)


def _s(path: Any) -> str | None:
    return None if path is None else str(path)


def new_client(
    settings: MqttSettings, client_id: str, protocol: mqtt.MQTTProtocolVersion, password: str | None
) -> mqtt.Client:
    """A paho 2.x client (callback API v2) with the link's reconnect, window, credentials and TLS."""
    v5 = protocol == mqtt.MQTTv5
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if v5 else True,
    )
    client.enable_logger(PAHO_LOG)
    client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
    client.max_inflight_messages_set(settings.inflight_window)
    client.max_queued_messages_set(0)
    if settings.username is not None:
        client.username_pw_set(settings.username, password)
    if settings.tls.enabled:
        configure_tls(client, settings)
    return client


def publish_properties(msg: OutboundMessage) -> Properties:
    """MQTT 5 PUBLISH properties of an outbox message: content type and its msg_id."""
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = msg.content_type
    props.UserProperty = [("msg_id", msg.msg_id)]
    return props
