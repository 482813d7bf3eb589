"""Authenticated commands on lews/v1/{site}/{node}/cmd/{name}: signature, freshness, replay, rate limit.

A command is JSON (agent/schemas/command.schema.json)::

    {"cmd": "ack", "args": {...}, "ts": "2026-...Z", "nonce": "<16-64 url-safe chars>",
     "key_id": "ops1", "alg": "hmac-sha256" | "ed25519", "sig": "<hex>"}

``sig`` covers the canonical JSON of every other field (sorted keys, no spaces, UTF-8). The gateway
accepts it only when: it was sent live (a retained copy the broker stores and serves at every
subscription is refused as a replay), the key is configured and allowed to issue that command, the
signature verifies, ``ts`` is at most ``max_skew_s`` old and at most ``max_future_s`` ahead of the
gateway clock, the nonce was never accepted before (persistent across restarts:
agent/publish/nonces.py), and the key is within its rate limit. Every rejection is counted by reason
and logged without the payload, signature or key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.errors import CommandRejected, PublishError
from agent.publish import schemas
from agent.publish.credentials import Secret, read_secret
from agent.publish.nonces import NonceStore
from agent.publish.payloads import iso_z, parse_iso_z
from agent.publish.settings import CommandKey, CommandSettings

log = logging.getLogger(__name__)
MAX_COMMAND_BYTES = 4096
PREAUTH_FACTOR = 20.0  # the unauthenticated flood limit is this many times a key's rate


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. Pure apart from the injected clock."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._last = burst, clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key_id: str
    alg: str
    secret: Secret | None  # hmac-sha256
    public: Ed25519PublicKey | None  # ed25519
    commands: frozenset[str]


@dataclass(frozen=True, slots=True)
class VerifiedCommand:
    name: str
    args: dict[str, Any]
    key_id: str
    nonce: str
    ts: float


def canonical(doc: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hex_or_raw(data: bytes) -> bytes:
    text = data.strip()
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return data


def load_key(cfg: CommandKey) -> KeyEntry:
    what = f"command key {cfg.key_id}"
    if cfg.alg == "hmac-sha256":
        raw = _hex_or_raw(read_secret(file=cfg.file, credential=cfg.credential, what=what).reveal())
        if len(raw) < 32:
            raise PublishError(
                f"{what} is {len(raw)} bytes", fix="use a random key of at least 32 bytes (64 hex)"
            )
        return KeyEntry(cfg.key_id, cfg.alg, Secret(raw), None, frozenset(cfg.commands))
    data = read_secret(file=cfg.file, credential=cfg.credential, what=what, secret=False).reveal()
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            pub = serialization.load_pem_public_key(data)
            if not isinstance(pub, Ed25519PublicKey):
                raise ValueError("not an Ed25519 public key")
        else:
            pub = Ed25519PublicKey.from_public_bytes(_hex_or_raw(data))
    except ValueError as exc:
        raise PublishError(
            f"{what}: the file does not hold an Ed25519 public key ({exc})",
            fix="put the signer's public key there as PEM or 64 hex characters",
        ) from exc
    return KeyEntry(cfg.key_id, cfg.alg, None, pub, frozenset(cfg.commands))


def sign_command(
    name: str,
    args: Mapping[str, Any],
    *,
    key_id: str,
    hmac_key: bytes | None = None,
    ed25519_key: Ed25519PrivateKey | None = None,
    t: float | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Build a signed command (for technicians' tools and tests)."""
    doc: dict[str, Any] = {
        "cmd": name,
        "args": dict(args),
        "ts": iso_z(time.time() if t is None else t),
        "nonce": nonce or secrets.token_urlsafe(18),
        "key_id": key_id,
        "alg": "hmac-sha256" if hmac_key is not None else "ed25519",
    }
    if hmac_key is not None:
        doc["sig"] = hmac.new(hmac_key, canonical(doc), hashlib.sha256).hexdigest()
    elif ed25519_key is not None:
        doc["sig"] = ed25519_key.sign(canonical(doc)).hex()
    else:
        raise PublishError("sign_command needs a key", fix="pass hmac_key= or ed25519_key=")
    return doc


class CommandVerifier:
    """Verifies inbound commands; counts accepted and rejected (by reason)."""

    def __init__(
        self,
        keys: Mapping[str, KeyEntry],
        *,
        max_skew_s: float = 120.0,
        max_future_s: float = 10.0,
        rate_per_min: float = 6.0,
        burst: int = 3,
        clock: Callable[[], float] = time.time,
        nonces: NonceStore | None = None,
    ) -> None:
        """``nonces``: the persistent nonce store (None: one in memory, lost at restart)."""
        self.keys = dict(keys)
        self.max_skew_s, self.max_future_s = max_skew_s, max_future_s
        self._clock = clock
        rate = rate_per_min / 60.0
        self._buckets = {k: TokenBucket(rate, burst, clock) for k in self.keys}
        self._preauth = TokenBucket(
            rate * PREAUTH_FACTOR * max(1, len(self.keys)), burst * PREAUTH_FACTOR, clock
        )
        self._log_bucket = TokenBucket(10 / 60.0, 10, clock)
        self.nonces = nonces if nonces is not None else NonceStore(None, keep_s=2 * max_skew_s)
        self.accepted = 0
        self.rejected: Counter[str] = Counter()

    @classmethod
    def from_settings(
        cls,
        cfg: CommandSettings,
        clock: Callable[[], float] = time.time,
        nonce_path: Path | None = None,
    ) -> CommandVerifier:
        """``nonce_path``: the SQLite file of seen nonces (None: in memory)."""
        keys = {k.key_id: load_key(k) for k in cfg.keys}
        return cls(
            keys,
            max_skew_s=cfg.max_skew_s,
            max_future_s=cfg.max_future_s,
            rate_per_min=cfg.rate_per_min,
            burst=cfg.burst,
            clock=clock,
            nonces=NonceStore(nonce_path, keep_s=2 * cfg.max_skew_s),
        )

    def verify(self, name: str, payload: bytes, *, retained: bool = False) -> VerifiedCommand:
        """The command, or CommandRejected (counted, logged without secrets). ``retained``: the broker
        delivered a stored copy (MQTT retain flag), not a live message: always refused."""
        try:
            if retained:
                raise CommandRejected("replay", "retained command (a stored copy, not sent live)")
            cmd = self._verify(name, payload)
        except CommandRejected as exc:
            self.rejected[exc.reason] += 1
            if self._log_bucket.take():
                log.warning("cmd/%s: %s", name[:32], exc.message)
            raise
        self.accepted += 1
        log.info("command %s accepted from key %s", cmd.name, cmd.key_id)
        return cmd

    def _verify(self, name: str, payload: bytes) -> VerifiedCommand:
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRejected("too_large", f"{len(payload)} bytes > {MAX_COMMAND_BYTES}")
        if not self._preauth.take():
            raise CommandRejected("flood", "too many commands (before authentication)")
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise CommandRejected("malformed", "payload is not JSON") from None
        problems = schemas.errors("command", doc)
        if problems:
            raise CommandRejected(
                "malformed", f"does not follow command.schema.json ({len(problems)} problem(s))"
            )
        if doc["cmd"] != name:
            raise CommandRejected("topic_mismatch", "cmd field differs from the topic's command name")
        key = self.keys.get(doc["key_id"])
        if key is None:
            raise CommandRejected("unknown_key", f"key_id {doc['key_id']!r} is not configured")
        if doc["alg"] != key.alg:
            raise CommandRejected("bad_signature", f"key {key.key_id} uses {key.alg}, not {doc['alg']}")
        if not _signature_ok(key, doc):
            raise CommandRejected("bad_signature", f"signature does not verify for key {key.key_id}")
        if name not in key.commands:
            raise CommandRejected("not_authorised", f"key {key.key_id} may not issue {name!r}")
        now = self._clock()
        try:
            ts = parse_iso_z(doc["ts"])
        except ValueError:
            raise CommandRejected("malformed", "ts is not an ISO-8601 UTC time") from None
        if not math.isfinite(ts) or now - ts > self.max_skew_s:
            raise CommandRejected(
                "stale", f"ts is {now - ts:+.0f} s from the gateway clock (max {self.max_skew_s:g})"
            )
        if ts - now > self.max_future_s:
            raise CommandRejected(
                "future", f"ts is {ts - now:.0f} s ahead of the gateway clock (max {self.max_future_s:g})"
            )
        why = self.nonces.seen(key.key_id, doc["nonce"], ts)
        if why is not None:
            raise CommandRejected("replay", why)
        if not self._buckets[key.key_id].take():
            raise CommandRejected("rate_limited", f"key {key.key_id} is over its rate limit")
        try:
            added = self.nonces.record(key.key_id, doc["nonce"], ts, now)
        except sqlite3.Error as exc:  # fail closed: a nonce not recorded could be replayed later
            raise CommandRejected("nonce_store", f"the nonce could not be recorded ({exc})") from None
        if not added:
            raise CommandRejected("replay", f"nonce already used by key {key.key_id}")
        return VerifiedCommand(name, dict(doc["args"]), key.key_id, doc["nonce"], ts)

    def counters(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": dict(self.rejected), "nonces_held": self.nonces.held()}

    def close(self) -> None:
        self.nonces.close()


def _signature_ok(key: KeyEntry, doc: Mapping[str, Any]) -> bool:
    try:
        sig = bytes.fromhex(doc["sig"])
    except ValueError:
        return False
    msg = canonical(doc)
    if key.secret is not None:
        return hmac.compare_digest(hmac.new(key.secret.reveal(), msg, hashlib.sha256).digest(), sig)
    if key.public is not None:
        try:
            key.public.verify(sig, msg)
        except InvalidSignature:
            return False
        return True
    return False


@dataclass(frozen=True, slots=True)
class AckRequest:
    """Arguments of the ``ack`` command: ``{"alert_id": str, "by": str?, "note": str?}``.

    ``by`` defaults to the signing key's id, so every acknowledgement names who gave it."""

    alert_id: str
    by: str
    note: str

    @classmethod
    def from_command(cls, cmd: VerifiedCommand) -> AckRequest:
        args = cmd.args
        alert_id, by, note = args.get("alert_id"), args.get("by", cmd.key_id), args.get("note", "")
        if not isinstance(alert_id, str) or not alert_id:
            raise PublishError(
                "ack command without an alert_id", fix="add args.alert_id from the retained alert"
            )
        if not isinstance(by, str) or not by.strip() or len(by) > 64:
            raise PublishError(
                "ack command with a bad 'by'", fix="args.by: who acknowledges, 1-64 characters"
            )
        if not isinstance(note, str) or len(note) > 500:
            raise PublishError("ack command with a bad note", fix="args.note: text up to 500 characters")
        return cls(alert_id, by.strip(), note)
