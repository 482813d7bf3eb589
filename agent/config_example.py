"""Render the configuration models as a commented TOML example (`agent config example`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from agent.config import AgentConfig

# Example tables for optional sections that are unset by default (a site must survey its reference).
_EXAMPLE_TABLES: dict[str, dict[str, Any]] = {
    "sensors.gnss.reference": {"lat": 46.3712, "lon": 13.6258, "h_m": 842.0},
}
# Example entries for list-of-table fields that are empty by default.
_EXAMPLE_LISTS: dict[str, list[dict[str, Any]]] = {
    "sensors.ports": [
        {"name": "gnss", "path": "/dev/lews/gnss", "baud": 115200, "kind": "gnss"},
        {"name": "bridge", "path": "/dev/lews/bridge", "baud": 115200, "kind": "bridge"},
    ],
}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _model_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _render(model: type[BaseModel], instance: BaseModel, prefix: str, out: list[str]) -> None:
    tables: list[tuple[str, type[BaseModel], BaseModel]] = []
    for name, field in model.model_fields.items():
        value = getattr(instance, name)
        sub = _model_class(field.annotation)
        if sub is not None and isinstance(value, BaseModel):
            tables.append((name, sub, value))
            continue
        key = f"{prefix}.{name}" if prefix else name
        if desc := field.description:
            out.append(f"# {desc}")
        if key in _EXAMPLE_LISTS or key in _EXAMPLE_TABLES:
            continue
        if value is None:
            out.append(f"# {name} =   (unset)")
        elif isinstance(value, dict) and not value:  # an inline {} could not be extended by [key.NAME] tables
            out.append(f"# {name} = {{}}   (none; add [{key}.NAME] tables)")
        elif isinstance(value, BaseModel):
            out.append(f"{name} = {_toml_value(value.model_dump(mode='json'))}")
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            continue
        elif field.default is PydanticUndefined and field.default_factory is None:
            out.append(f"{name} = {_toml_value(value)}  # required")
        else:
            out.append(f"{name} = {_toml_value(value)}")
    for name, sub, value in tables:
        key = f"{prefix}.{name}" if prefix else name
        out.append("")
        out.append(f"[{key}]")
        _render(sub, value, key, out)
    for key, table in _EXAMPLE_TABLES.items():
        if key.rsplit(".", 1)[0] == prefix:
            out.append("")
            out.append(f"[{key}]  # example values: survey your own reference point")
            out.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    for key, entries in _EXAMPLE_LISTS.items():
        if key.rsplit(".", 1)[0] == prefix:
            for entry in entries:
                out.append("")
                out.append(f"[[{key}]]")
                out.extend(f"{k} = {_toml_value(v)}" for k, v in entry.items())


def example_toml() -> str:
    """A complete, valid configuration with every field described."""
    out = ["# lews-agent configuration. Every key is optional unless marked required.", ""]
    _render(AgentConfig, AgentConfig(), "", out)
    return "\n".join(out).strip() + "\n"
