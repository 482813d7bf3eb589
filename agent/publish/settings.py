"""The `[mqtt]` section of the agent configuration (pydantic; unknown keys are rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TlsSettings(_Section):
    enabled: bool = Field(default=False, description="Connect with TLS (MQTT over TLS, usually port 8883).")
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the broker certificate. When set, the broker "
        "certificate and host name are always verified. Unset: the system CA store is used.",
    )
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (optional)."
    )
    key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate (optional)."
    )
    insecure: bool = Field(
        default=False,
        description="DANGEROUS: skip verification of the broker certificate and host name. Only for lab "
        "brokers with self-signed certificates; refused unless set explicitly; logged as a warning.",
    )

    @model_validator(mode="after")
    def _pairs(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        if self.insecure and self.ca_file is not None:
            raise ValueError(
                "tls.insecure cannot be combined with tls.ca_file: a configured CA is always verified"
            )
        return self


class OutboxSettings(_Section):
    path: Path = Field(
        default=Path("/var/lib/lews-agent/outbox.sqlite"),
        description="SQLite file of the durable outbox (in the StateDirectory, on persistent storage).",
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite synchronous mode. FULL fsyncs every accepted message (survives power loss); "
        "NORMAL survives a crash of the agent but may lose the last messages on power loss.",
    )
    max_messages: int = Field(
        default=100_000,
        ge=10,
        description="Bound on queued messages. When reached, the oldest telemetry is dropped (counted); "
        "alerts, wire and forecasts are never dropped.",
    )
    hard_limit_mb: float | None = Field(
        default=None,
        gt=0,
        description="Hard size limit of the database file in MiB (SQLite max_page_count); unset: disk.",
    )
    historical_after_s: float = Field(
        default=5.0,
        ge=0,
        description="A message that waited longer than this in the outbox is sent marked historical "
        "(historical: true, original_time, queued_s).",
    )


class CommandKey(_Section):
    key_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Id signers put in key_id.")
    alg: Literal["hmac-sha256", "ed25519"] = Field(
        default="hmac-sha256",
        description="hmac-sha256: shared secret (the file holds it, hex or raw, >= 32 bytes). "
        "ed25519: the file holds the signer's PUBLIC key (PEM, or 32 bytes raw/hex): no secret here.",
    )
    file: Path | None = Field(
        default=None, description="File holding the key (must not be world-readable for HMAC)."
    )
    credential: str | None = Field(
        default=None,
        description="Name of a systemd credential ($CREDENTIALS_DIRECTORY/NAME) holding the key.",
    )
    commands: list[str] = Field(
        default_factory=lambda: ["ack"], description="Commands this key may issue (e.g. ack, ping)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> CommandKey:
        if (self.file is None) == (self.credential is None):
            raise ValueError(f"command key {self.key_id}: give exactly one of file or credential")
        return self


class CommandSettings(_Section):
    enabled: bool = Field(
        default=True, description="Subscribe to lews/v1/{site}/{node}/cmd/+ (signed commands only)."
    )
    keys: list[CommandKey] = Field(default_factory=list, description="Authorised signers; none: all refused.")
    max_skew_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Commands whose ts is older than this (gateway clock) are refused (stale).",
    )
    max_future_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="Commands whose ts is more than this ahead of the gateway clock are refused (future): "
        "a command signed for later cannot be held back and replayed in the freshness window.",
    )
    rate_per_min: float = Field(
        default=6.0, gt=0, description="Sustained accepted commands per minute per key."
    )
    burst: int = Field(
        default=3, ge=1, description="Commands a key may send at once before the rate limit applies."
    )


class CapSettings(_Section):
    enabled: bool = Field(
        default=True, description="Publish CAP 1.2 XML on lews/v1/{site}/{node}/cap for alert events."
    )
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = Field(
        default="Actual", description="CAP <status>; use Exercise for drills and Test for the demo."
    )
    scope: Literal["Public", "Restricted", "Private"] = Field(default="Public", description="CAP <scope>.")
    restriction: str | None = Field(
        default=None, description="CAP <restriction>, required when scope is Restricted."
    )
    sender: str | None = Field(default=None, description="CAP <sender>; unset: lews-agent@{node}.{site}.")
    sender_name: str = Field(
        default="lews-agent", description="CAP <senderName>: the authority people recognise."
    )
    language: str = Field(default="en-US", description="CAP <language> (RFC 3066).")
    area_desc: str | None = Field(
        default=None, description="CAP <areaDesc>: the slope/village concerned; unset: site id."
    )
    latitude: float | None = Field(
        default=None, ge=-90, le=90, description="Centre of the warned area (WGS 84)."
    )
    longitude: float | None = Field(
        default=None, ge=-180, le=180, description="Centre of the warned area (WGS 84)."
    )
    radius_km: float = Field(
        default=1.0, gt=0, description="Radius of the warned area around the centre, km."
    )
    expires_h: float = Field(default=24.0, gt=0, description="CAP <expires> = sent + this, hours.")

    @model_validator(mode="after")
    def _restricted(self) -> CapSettings:
        if self.scope == "Restricted" and not self.restriction:
            raise ValueError("cap.restriction is required when cap.scope = 'Restricted'")
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("cap.latitude and cap.longitude must be given together")
        return self


class MqttSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Broker port; unset: 1883, or 8883 with TLS."
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field(
        default="auto",
        description="MQTT version. auto: MQTT 5, falling back to 3.1.1 when the broker refuses 5.",
    )
    connack_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="auto protocol: an open TCP connection with no CONNACK to MQTT 5 for this long -> 3.1.1.",
    )
    client_id: str | None = Field(default=None, description="MQTT client id; unset: lews-{site}-{node}.")
    keepalive_s: int = Field(
        default=30, ge=5, le=3600, description="MQTT keepalive; the last will fires ~1.5x after loss."
    )
    username: str | None = Field(default=None, description="Broker user name (not secret).")
    password_file: Path | None = Field(
        default=None, description="File holding the broker password (first line)."
    )
    password_credential: str | None = Field(
        default=None,
        description="systemd credential name holding the password ($CREDENTIALS_DIRECTORY/NAME).",
    )
    allow_plaintext_password: bool = Field(
        default=False,
        description="Allow sending the password without TLS to a non-loopback broker. Off: refused.",
    )
    tls: TlsSettings = Field(default_factory=TlsSettings, description="TLS options.")
    reconnect_min_s: int = Field(
        default=1, ge=1, description="First reconnect delay (doubles up to reconnect_max_s)."
    )
    reconnect_max_s: int = Field(default=60, ge=1, description="Longest reconnect delay.")
    inflight_window: int = Field(
        default=20, ge=1, le=1000, description="Messages sent but not yet acknowledged, at most."
    )
    status_interval_s: float = Field(
        default=60.0, gt=0, description="How often the retained status is refreshed."
    )
    outbox: OutboxSettings = Field(default_factory=OutboxSettings, description="Durable outbox.")
    commands: CommandSettings = Field(default_factory=CommandSettings, description="Signed commands (cmd/).")
    cap: CapSettings = Field(default_factory=CapSettings, description="CAP 1.2 alert messages.")

    @model_validator(mode="after")
    def _consistent(self) -> MqttSettings:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("give at most one of mqtt.password_file and mqtt.password_credential")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("mqtt.reconnect_max_s must be >= reconnect_min_s")
        return self

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (8883 if self.tls.enabled else 1883)
