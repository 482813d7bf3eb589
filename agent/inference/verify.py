"""Is this bundle trustworthy? Schema, Ed25519 signature, sha256 of every file, ONNX vs manifest,
golden parity.

`verify_bundle` is what `agent bundle verify` and the model manager run before a bundle is used.
Each failure raises a specific Bundle* error from agent/errors.py that names the file and the fix.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import (
    BundleIntegrityError,
    BundleSignatureError,
    GoldenMismatchError,
)
from agent.inference.backend import Backend
from agent.inference.manifest import (
    ENGINE_DIR,
    MANIFEST_NAME,
    SIGNATURE_KEY,
    ModelEntry,
    Variant,
    canonical_bytes,
    model_entries,
    read_manifest,
    sha256_file,
)

log = logging.getLogger(__name__)


def load_public_key(path: Path | None) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM SubjectPublicKeyInfo, as `agent-export keygen` writes).

    ``None`` (no ``inference.public_key`` configured: there is no default key) trusts nothing."""
    if path is None:
        raise BundleSignatureError(
            "no bundle public key configured (inference.public_key): no bundle is trusted",
            fix="set inference.public_key to the signing.pub of the key your bundles are signed with "
            "(bundles/demo-keys/signing.pub is the demo's: its private half is public)",
        )
    path = Path(path)
    if not path.is_file():
        raise BundleSignatureError(
            f"public key {path} not found", fix="pass the signing.pub written by `agent-export keygen`"
        )
    mode = path.stat().st_mode
    if mode & stat.S_IWOTH:
        raise BundleSignatureError(
            f"public key {path} is writable by every user (mode {stat.S_IMODE(mode):o}): anyone on this "
            "machine could make the agent trust their own bundles",
            fix=f"chmod 644 {path} (owned by root or the agent's user)",
        )
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise BundleSignatureError(
            f"{path} is not a PEM public key ({exc})", fix="pass signing.pub, not the private signing.key"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleSignatureError(
            f"{path} is not an Ed25519 key", fix="use a key from `agent-export keygen`"
        )
    return key


def public_key_sha256(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def verify_signature(manifest: dict[str, Any], key: Ed25519PublicKey, *, path: Path) -> None:
    sig = manifest.get(SIGNATURE_KEY)
    if not isinstance(sig, dict) or not sig.get("value"):
        raise BundleSignatureError(
            f"{path} is unsigned", fix="sign it: `agent-export bundle ... --sign-key KEY_DIR/signing.key`"
        )
    if sig.get("public_key_sha256") != public_key_sha256(key):
        raise BundleSignatureError(
            f"{path} was signed with another key (sha256 {sig.get('public_key_sha256')}, "
            f"this public key is {public_key_sha256(key)})",
            fix="pass the public key of the key that signed this bundle, or obtain a bundle signed by yours",
        )
    try:
        value = base64.b64decode(sig["value"], validate=True)
        key.verify(value, canonical_bytes(manifest))
    except (InvalidSignature, ValueError) as exc:
        raise BundleSignatureError(
            f"{path}: Ed25519 signature does not verify: the manifest was edited after signing",
            fix="never edit a signed manifest; rebuild and re-sign the bundle, "
            "or copy it again from its source",
        ) from exc


def verify_files(bundle_dir: Path, manifest: dict[str, Any]) -> None:
    """Every listed file exists with its size and sha256; no unlisted file (engines/ aside)."""
    bundle_dir = Path(bundle_dir)
    for rel, info in sorted(manifest["files"].items()):
        path = bundle_dir / rel
        if not path.is_file():
            raise BundleIntegrityError(
                f"{path} is missing from the bundle", fix="copy the complete bundle directory again"
            )
        size = path.stat().st_size
        if size != info["bytes"]:
            raise BundleIntegrityError(
                f"{path} has {size} bytes, the manifest says {info['bytes']}: "
                + ("truncated" if size < info["bytes"] else "altered"),
                fix="copy the bundle again (check free disk space) and re-run `agent bundle verify`",
            )
        if sha256_file(path) != info["sha256"]:
            raise BundleIntegrityError(
                f"{path}: sha256 differs from the manifest: the file was modified or corrupted",
                fix="copy the bundle again from its signed source; never edit bundle files",
            )
    listed = set(manifest["files"]) | {MANIFEST_NAME}
    for root, dirs, names in os.walk(bundle_dir):
        rel_root = Path(root).relative_to(bundle_dir)
        if rel_root.parts[:1] == (ENGINE_DIR,):
            dirs.clear()
            continue
        for name in names:
            rel = (rel_root / name).as_posix()
            if rel not in listed:
                raise BundleIntegrityError(
                    f"{bundle_dir / rel} is not part of the signed bundle",
                    fix=f"remove it; only files listed in {MANIFEST_NAME} (and {ENGINE_DIR}/) "
                    "belong in a bundle",
                )


@dataclass
class GoldenVectors:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, dict[str, np.ndarray]]  # variant id -> output name -> array


def load_golden(bundle_dir: Path, entry: ModelEntry) -> GoldenVectors:
    path = Path(bundle_dir) / entry.golden_file
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise BundleIntegrityError(
            f"{path}: cannot read golden vectors ({exc})", fix="rebuild the bundle"
        ) from exc
    inputs = {k.split("__", 1)[1]: v for k, v in arrays.items() if k.startswith("input__")}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        if k.startswith("output__"):
            _, vid, name = k.split("__", 2)
            outputs.setdefault(vid, {})[name] = v
    return GoldenVectors(inputs, outputs)


def compare_outputs(
    got: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    tolerance: Mapping[str, tuple[float, float]],
    *,
    scale: float = 1.0,
) -> dict[str, float]:
    """Per output: worst |got-want| / (atol + rtol*|want|) (<= 1 passes). Missing outputs count as inf."""
    ratios: dict[str, float] = {}
    for name, ref in want.items():
        if name not in got or np.shape(got[name]) != np.shape(ref):
            ratios[name] = float("inf")
            continue
        atol, rtol = tolerance.get(name, (1e-4, 1e-3))
        allowed = scale * (atol + rtol * np.abs(ref)) + 1e-12
        diff = np.abs(np.asarray(got[name], dtype=np.float64) - ref)
        ratios[name] = float(np.nanmax(np.where(np.isfinite(diff), diff / allowed, np.inf)))
    return ratios


def golden_reference(golden: GoldenVectors, variant: Variant, path: Path) -> dict[str, np.ndarray]:
    """The golden outputs `variant` must reproduce: its own, or FP32's (INT8 bundles since issue 14)."""
    want = golden.outputs.get(variant.golden_outputs_id)
    if want is None:
        raise GoldenMismatchError(
            f"{path} has no golden outputs for variant {variant.golden_outputs_id!r} "
            f"(reference of {variant.id!r})",
            fix="rebuild the bundle",
        )
    return want


def check_golden(
    backend: Backend, bundle_dir: Path, entry: ModelEntry, variant: Variant, *, scale: float = 1.0
) -> dict[str, float]:
    """Run the golden inputs through `backend`; raise GoldenMismatchError beyond tolerance."""
    golden = load_golden(bundle_dir, entry)
    want = golden_reference(golden, variant, Path(bundle_dir) / entry.golden_file)
    got = backend.run(entry.name, golden.inputs)
    ratios = compare_outputs(got, want, variant.golden_tolerance, scale=scale)
    worst = max(ratios.values())
    if not worst <= 1.0:
        raise GoldenMismatchError(
            f"model {entry.name!r} variant {variant.id!r} ({variant.file}) on {backend.name}: "
            "golden vectors do not "
            f"reproduce: worst error / tolerance per output {ratios}",
            fix="the runtime computes something else than the bundle was validated with: "
            "check the onnxruntime/"
            "TensorRT version, rebuild the engine, or use the fp32 variant",
        )
    return ratios


@dataclass
class VerifyReport:
    bundle_dir: str
    bundle_id: str
    created_at: str
    models: list[str]
    golden: dict[str, dict[str, float]] = field(default_factory=dict)  # "model/variant" -> ratios
    ok: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bundle_dir": self.bundle_dir,
            "bundle_id": self.bundle_id,
            "created_at": self.created_at,
            "models": self.models,
            "golden_error_over_tolerance": self.golden,
        }


def verify_bundle(
    bundle_dir: Path,
    public_key: Path | Ed25519PublicKey | None,
    *,
    golden: bool = True,
    threads: int = 1,
    golden_scale: float = 1.0,
) -> VerifyReport:
    """Schema, signature, files, ONNX-vs-manifest and (unless golden=False) golden parity in onnxruntime.

    The signature is checked before any ONNX file is parsed, so an untrusted graph is never loaded.
    Every variant meant for onnxruntime is checked; the TensorRT variant's golden outputs are checked
    against its engine at load (engine_check) and must also reproduce here in onnxruntime.
    """
    from agent.inference.ort_backend import OrtBackend  # onnxruntime import only when needed

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    verify_signature(manifest, key, path=bundle_dir / MANIFEST_NAME)
    verify_files(bundle_dir, manifest)
    entries = model_entries(manifest)
    report = VerifyReport(
        str(bundle_dir), manifest["bundle_id"], manifest["created_at"], [e.name for e in entries]
    )
    precisions = sorted({v.precision for e in entries for v in e.variants})
    for precision in precisions:
        backend = OrtBackend(bundle_dir, entries, precision=precision, threads=threads, use_cuda=False)
        try:
            for entry in entries:
                # every variant of this precision reproduces in onnxruntime
                # (int8_trt included: same Q/DQ math)
                for variant in (v for v in entry.variants if v.precision == precision):
                    if variant.id != backend.variant_id(entry.name):
                        one = _SingleVariant(bundle_dir, entry, variant, threads)
                        if golden:
                            report.golden[f"{entry.name}/{variant.id}"] = check_golden(
                                one, bundle_dir, entry, variant, scale=golden_scale
                            )
                        one.close()
                    elif golden:
                        report.golden[f"{entry.name}/{variant.id}"] = check_golden(
                            backend, bundle_dir, entry, variant, scale=golden_scale
                        )
        finally:
            backend.close()
    log.info("bundle %s (%s) verified: %s", bundle_dir, manifest["bundle_id"], report.golden)
    return report


class _SingleVariant:
    """An onnxruntime session on one named variant (used to check variants made for TensorRT)."""

    name = "onnxruntime"

    def __init__(self, bundle_dir: Path, entry: ModelEntry, variant: Variant, threads: int) -> None:
        from agent.inference.ort_backend import check_session_against_manifest, make_session

        path = Path(bundle_dir) / variant.file
        self.precision = variant.precision
        self._entry = entry
        self._variant = variant
        self._session = make_session(path, threads=threads, providers=["CPUExecutionProvider"])
        check_session_against_manifest(self._session, entry, path)

    def variant_id(self, model_name: str) -> str:
        return self._variant.id

    def run(self, model_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from agent.inference.backend import check_inputs

        feed = check_inputs(self._entry, inputs)
        names = [o.name for o in self._entry.outputs]
        return dict(zip(names, self._session.run(names, feed), strict=True))

    def close(self) -> None:
        del self._session
