"""The ownership table of docs/development.md covers every module of the product exactly once."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "export", "firmware_bridge")


def _expand(pattern: str) -> list[str]:
    """`a/{b,c}.py` -> [`a/b.py`, `a/c.py`] (one brace group at most, as the table writes them)."""
    m = re.search(r"\{([^}]*)\}", pattern)
    if m is None:
        return [pattern]
    return [pattern[: m.start()] + part + pattern[m.end() :] for part in m.group(1).split(",")]


def ownership_rows() -> list[tuple[str, list[str], list[str]]]:
    """(area, module patterns, docs) of each row of the "Who owns what" table."""
    text = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("## Who owns what", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("area", "---"):
            continue
        patterns = [p for code in re.findall(r"`([^`]+)`", cells[1]) for p in _expand(code)]
        docs = [d.strip() for d in cells[2].split(",") if d.strip()]
        rows.append((cells[0], patterns, docs))
    return rows


def _owner_of(module: str, rows: list[tuple[str, list[str], list[str]]]) -> list[str]:
    return [
        area
        for area, patterns, _ in rows
        for p in patterns
        if (p.endswith("/") and module.startswith(p)) or module == p
    ]


def test_every_module_has_exactly_one_owner_row() -> None:
    rows = ownership_rows()
    assert len(rows) >= 10
    modules = sorted(str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))
    assert len(modules) > 150
    missing = [m for m in modules if not _owner_of(m, rows)]
    assert not missing, f"add these modules to the table in docs/development.md: {missing}"
    twice = {m: owners for m in modules if len(owners := _owner_of(m, rows)) > 1}
    assert not twice, f"modules listed in more than one row of docs/development.md: {twice}"


def test_every_listed_file_and_doc_exists() -> None:
    for area, patterns, docs in ownership_rows():
        for p in patterns:
            assert p.split("/", 1)[0] in PACKAGES, (area, p)
            # A folder may be listed before its first module exists (e.g. agent/jobs/); a file may not.
            if not p.endswith("/"):
                assert (REPO / p).is_file(), f"docs/development.md lists {p} ({area}), which does not exist"
        for doc in docs:
            assert (REPO / "docs" / doc).is_file(), f"{area}: docs/{doc} does not exist"


def test_the_table_parser_sees_braces_and_folders() -> None:
    assert _expand("agent/{a,b}.py") == ["agent/a.py", "agent/b.py"]
    rows: list[tuple[str, list[str], list[str]]] = [("x", ["agent/warning/", "agent/cli.py"], [])]
    assert _owner_of("agent/warning/engine.py", rows) == ["x"]
    assert _owner_of("agent/cli.py", rows) == ["x"] and _owner_of("agent/clix.py", rows) == []
