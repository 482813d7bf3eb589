"""docs/architecture.md's layer diagram is the contracts file `.importlinter`, in the same order."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def contract_layers(container: str) -> list[str]:
    """The layers of the `layers` contract over ``container``, top first, as `a | b` (no optional marks)."""
    ini = configparser.ConfigParser()
    ini.read(REPO / ".importlinter", encoding="utf-8")
    for section in ini.sections():
        if ini[section].get("type") == "layers" and ini[section].get("containers", "").split() == [container]:
            lines = [ln.strip() for ln in ini[section]["layers"].splitlines() if ln.strip()]
            return [" | ".join(part.strip().strip("()") for part in ln.split("|")) for ln in lines]
    raise AssertionError(f"no layers contract for {container} in .importlinter")


def doc_diagram(container: str) -> str:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("## Layers", 1)[1].split("```", 2)[1]
    parts = re.split(r"^(\w+)/  \(.*\)$", block, flags=re.M)
    found = dict(zip(parts[1::2], parts[2::2], strict=True))
    return found[container]


def test_the_agent_diagram_lists_the_contract_layers_in_order() -> None:
    rows = [ln.strip() for ln in doc_diagram("agent").splitlines() if ln.strip()]
    # each row: the layer (names joined by " | "), two or more spaces, what it holds
    layers = [re.split(r"\s{2,}", row)[0] for row in rows]
    assert layers == contract_layers("agent")


def test_the_export_and_firmware_bridge_chains_are_the_contract_layers() -> None:
    for container in ("export", "firmware_bridge"):
        chain = " ".join(doc_diagram(container).split())
        assert [s.strip() for s in chain.split("->")] == contract_layers(container), container
