"""Dependencies by role: the gateway install carries exactly what agent/ and firmware_bridge/ import.

Scans every import statement (module level and inside functions) of the gateway packages and compares
the third-party ones with pyproject.toml: an undeclared import fails, and so does a gateway dependency
nothing in the gateway imports (it belongs in an extra).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from agent.compat import tomllib

REPO = Path(__file__).resolve().parent.parent
GATEWAY = ("agent", "firmware_bridge")
OURS = {"agent", "export", "firmware_bridge"}
# Standard library on the newer Pythons the gateway supports, imported behind a version check
# (agent/compat.py: tomllib on 3.11+, tomli on 3.10).
STDLIB = set(sys.stdlib_module_names) | {"tomllib"}
# Import name -> distribution name where they differ.
DIST_OF = {
    "serial": "pyserial",
    "paho": "paho-mqtt",
    "prometheus_client": "prometheus-client",
    "pydantic_core": "pydantic-core",
}
# Imported by the gateway only behind a clear error or a hardware check, declared in an extra.
OPTIONAL = {"tensorrt": "trt", "pycuda": "trt", "amqtt": "test"}


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


def _project() -> dict[str, object]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    assert isinstance(project, dict)
    return project


def gateway_imports() -> dict[str, set[str]]:
    """Third-party top-level import name -> the gateway files importing it."""
    found: dict[str, set[str]] = {}
    for package in GATEWAY:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in OURS and top not in STDLIB:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_gateway_import_is_declared_and_every_gateway_dependency_is_imported() -> None:
    project = _project()
    deps = project["dependencies"]
    extras = project["optional-dependencies"]
    assert isinstance(deps, list) and isinstance(extras, dict)
    declared = {_name(r) for r in deps}
    imported = gateway_imports()
    needed = {_name(DIST_OF.get(top, top)) for top in imported if top not in OPTIONAL}
    undeclared = {top: sorted(files) for top, files in imported.items() if top not in OPTIONAL}
    undeclared = {t: f for t, f in undeclared.items() if _name(DIST_OF.get(t, t)) not in declared}
    assert not undeclared, f"imported by the gateway but not in [project] dependencies: {undeclared}"
    unused = sorted(declared - needed)
    assert not unused, f"gateway dependencies nothing in agent/ or firmware_bridge/ imports: {unused}"
    for top, extra in OPTIONAL.items():
        assert _name(DIST_OF.get(top, top)) in {_name(r) for r in extras[extra]}, (top, extra)


def test_the_train_extra_declares_the_toolchain_and_torch_is_not_a_gateway_dependency() -> None:
    project = _project()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    train = {_name(r): r for r in extras["train"]}
    assert train.get("torch") == "torch==2.13.0"
    assert "onnx" in train
    deps = project["dependencies"]
    assert isinstance(deps, list)
    assert not {"torch", "onnx", "scipy", "scikit-learn"} & {_name(r) for r in deps}
    # The Makefile installs torch from the CPU wheel before the extras, so pip never pulls a CUDA build.
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert makefile.index("pip install -q torch==2.13.0") < makefile.index(".[train,dev]")


def test_the_scan_sees_function_local_imports() -> None:
    imported = gateway_imports()
    # agent/publish/broker.py imports amqtt inside the function that starts the fallback broker.
    assert "agent/publish/broker.py" in imported["amqtt"]
    assert "agent/publish/schemas.py" in imported["referencing"]
