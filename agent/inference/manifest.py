"""The bundle manifest: JSON Schema validation, canonical bytes for signing, typed access.

The format is described in docs/bundle-format.md. This module has no heavy imports: it is used by the
gateway (`agent bundle verify`, the model manager) and by the toolchain that writes bundles.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from agent.errors import BundleIntegrityError, BundleSchemaError

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
SIGNATURE_KEY = "signature"
# Directory beside the signed files where device-specific TensorRT engines are written (not signed).
ENGINE_DIR = "engines"


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    text = resources.files("agent.inference").joinpath("manifest.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def canonical_bytes(manifest: dict[str, Any]) -> bytes:
    """The bytes the Ed25519 signature covers: the manifest without `signature`, canonical JSON.

    Keys sorted, no insignificant whitespace, UTF-8; floats as Python's shortest round-trip repr,
    so loading and re-dumping a manifest yields the same bytes.
    """
    unsigned = {k: v for k, v in manifest.items() if k != SIGNATURE_KEY}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def validate_manifest(manifest: Any, *, path: Path) -> None:
    """Raise BundleSchemaError naming the first schema violation (with its JSON path)."""
    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise BundleSchemaError(
            f"{path}: manifest does not follow schema version {SCHEMA_VERSION} at {where}: {err.message}",
            fix="rebuild the bundle with `agent-export bundle` of this version; "
            "never edit manifest.json by hand",
        )
    _check_references(manifest, path=path)


def _check_references(manifest: dict[str, Any], *, path: Path) -> None:
    files = manifest["files"]
    names: set[str] = set()
    for model in manifest["models"]:
        if model["name"] in names:
            raise BundleSchemaError(
                f"{path}: model name {model['name']!r} appears twice", fix="rebuild the bundle"
            )
        names.add(model["name"])
        refs = [model["golden"]["file"]] + [v["file"] for v in model["variants"]]
        for ref in refs:
            if ref not in files:
                raise BundleSchemaError(
                    f"{path}: model {model['name']!r} refers to {ref!r}, which `files` does not list",
                    fix="rebuild the bundle; every file must be hashed in the manifest",
                )
        ids = [v["id"] for v in model["variants"]]
        if len(set(ids)) != len(ids):
            raise BundleSchemaError(f"{path}: model {model['name']!r} repeats a variant id", fix="rebuild")
        if model["feature_axis"] >= len(model["inputs"][0]["shape"]):
            raise BundleSchemaError(
                f"{path}: model {model['name']!r} feature_axis {model['feature_axis']} is outside its "
                f"first input's shape {model['inputs'][0]['shape']}",
                fix="rebuild the bundle",
            )


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Read and schema-validate manifest.json (no signature or hash check: see verify.py)."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not Path(bundle_dir).is_dir():
        raise BundleIntegrityError(
            f"bundle directory {bundle_dir} does not exist", fix="pass the directory that holds manifest.json"
        )
    if not path.is_file():
        raise BundleIntegrityError(
            f"{path} is missing: {bundle_dir} is not a model bundle",
            fix="copy the whole bundle directory written by `agent-export bundle`",
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(
            f"{path} is not valid JSON ({exc}); the file is truncated or corrupt",
            fix="copy the bundle again from its source and re-run `agent bundle verify`",
        ) from exc
    validate_manifest(manifest, path=path)
    return dict(manifest)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class Variant:
    id: str
    precision: str
    runtimes: tuple[str, ...]
    file: str
    golden_tolerance: dict[str, tuple[float, float]]  # output -> (atol, rtol)
    golden_reference: str = "self"  # "self" or "fp32": whose golden outputs this variant must reproduce

    @property
    def golden_outputs_id(self) -> str:
        """The variant id whose recorded golden outputs this variant is compared with."""
        return "fp32" if self.golden_reference == "fp32" else self.id


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    feature_names: tuple[str, ...]
    feature_axis: int
    variants: tuple[Variant, ...]
    golden_file: str
    meta: dict[str, Any]

    def variant_for(self, runtime: str, precision: str) -> Variant | None:
        """The variant made for `runtime` at `precision`, or None."""
        for v in self.variants:
            if v.precision == precision and runtime in v.runtimes:
                return v
        return None


def model_entries(manifest: dict[str, Any]) -> list[ModelEntry]:
    out = []
    for m in manifest["models"]:
        variants = tuple(
            Variant(
                id=v["id"],
                precision=v["precision"],
                runtimes=tuple(v["runtimes"]),
                file=v["file"],
                golden_tolerance={
                    k: (float(t["atol"]), float(t["rtol"])) for k, t in v["golden_tolerance"].items()
                },
                golden_reference=str(v.get("golden_reference", "self")),
            )
            for v in m["variants"]
        )
        out.append(
            ModelEntry(
                name=m["name"],
                task=m["task"],
                inputs=tuple(TensorSpec.from_json(t) for t in m["inputs"]),
                outputs=tuple(TensorSpec.from_json(t) for t in m["outputs"]),
                feature_names=tuple(m["feature_names"]),
                feature_axis=int(m["feature_axis"]),
                variants=variants,
                golden_file=m["golden"]["file"],
                meta=dict(m["meta"]),
            )
        )
    return out
