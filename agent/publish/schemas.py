"""Load the payload JSON Schemas (draft 2020-12) from agent/schemas/ and validate payloads against them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from agent.errors import PublishError
from agent.publish.topics import COMMAND_SCHEMA, TOPICS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
PAYLOAD_SCHEMAS: tuple[str, ...] = (
    "envelope",
    COMMAND_SCHEMA,
    *sorted({s.schema for s in TOPICS.values() if s.schema}),
)


def schema_path(name: str) -> Path:
    return SCHEMA_DIR / f"{name}.schema.json"


@cache
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    docs: dict[str, dict[str, Any]] = {}
    registry: Registry = Registry()
    for name in PAYLOAD_SCHEMAS:
        path = schema_path(name)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PublishError(
                f"payload schema {path} cannot be read: {exc}",
                fix="reinstall lews-agent (package data missing)",
            ) from exc
        Draft202012Validator.check_schema(doc)
        docs[name] = doc
        registry = registry.with_resource(doc["$id"], Resource.from_contents(doc))
    return registry, docs


@cache
def validator(name: str) -> Draft202012Validator:
    registry, docs = _registry()
    if name not in docs:
        raise PublishError(f"no payload schema named {name!r}", fix=f"use one of {sorted(docs)}")
    return Draft202012Validator(docs[name], registry=registry)


def errors(name: str, payload: Any) -> list[str]:
    """Human-readable schema violations (empty when valid)."""
    out = []
    for err in sorted(validator(name).iter_errors(payload), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        out.append(f"{where}: {err.message}")
    return out


def validate(name: str, payload: Any) -> None:
    """Raise PublishError when ``payload`` does not follow agent/schemas/{name}.schema.json."""
    problems = errors(name, payload)
    if problems:
        raise PublishError(
            f"{name} payload does not follow {schema_path(name).name}: " + "; ".join(problems[:5]),
            fix="this is a bug in the code that built the payload; report it with the message above",
        )
