"""Ed25519 keys for bundle signing: generate a key pair, load the private key, sign a manifest."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.errors import BundleSignatureError
from agent.inference.manifest import SIGNATURE_KEY, canonical_bytes
from agent.inference.verify import public_key_sha256

log = logging.getLogger(__name__)

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"


def keygen(out_dir: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write KEY_DIR/signing.key (PKCS8 PEM, mode 0600) and KEY_DIR/signing.pub (PEM)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    if not overwrite and (priv_path.exists() or pub_path.exists()):
        raise BundleSignatureError(
            f"{priv_path} or {pub_path} already exists; refusing to replace a signing key",
            fix="choose another --out directory, or pass --force if you really mean to rotate the key",
        )
    key = Ed25519PrivateKey.generate()
    priv_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if overwrite and priv_path.exists():
        priv_path.unlink()
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv_pem)
    os.chmod(priv_path, 0o600)  # the umask cannot widen it, but be explicit
    pub_path.write_bytes(pub_pem)
    log.info("wrote %s (0600) and %s, key id %s", priv_path, pub_path, public_key_sha256(key.public_key()))
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    path = Path(path)
    if not path.is_file():
        raise BundleSignatureError(
            f"signing key {path} not found", fix="create one with `agent-export keygen --out KEY_DIR`"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("signing key %s has mode %o; it should be 0600 (chmod 600 %s)", path, mode, path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise BundleSignatureError(
            f"{path} is not an unencrypted PEM private key ({exc})",
            fix="pass the signing.key written by `agent-export keygen`",
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleSignatureError(f"{path} is not an Ed25519 key", fix="use `agent-export keygen`")
    return key


def sign_manifest(manifest: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return the manifest with `signature` = Ed25519 over its canonical bytes (docs/bundle-format.md)."""
    unsigned = {k: v for k, v in manifest.items() if k != SIGNATURE_KEY}
    value = key.sign(canonical_bytes(unsigned))
    signed = dict(unsigned)
    signed[SIGNATURE_KEY] = {
        "algorithm": "ed25519",
        "public_key_sha256": public_key_sha256(key.public_key()),
        "value": base64.b64encode(value).decode("ascii"),
    }
    return signed
