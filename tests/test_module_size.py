"""Small modules with one job: no module of agent/ or export/ is over 400 lines (docs/development.md)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIMIT = 400


def test_no_module_of_agent_or_export_is_over_the_limit() -> None:
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
        for package in ("agent", "export")
        for p in sorted((REPO / package).rglob("*.py"))
    }
    assert len(sizes) > 100
    over = {path: n for path, n in sizes.items() if n > LIMIT}
    assert not over, f"split these modules (limit {LIMIT} lines): {over}"
