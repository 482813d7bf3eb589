"""docs/firmware-protocol.md says what the code does."""

from __future__ import annotations

from pathlib import Path

from firmware_bridge.crc import CRC32C_CHECK
from firmware_bridge.errors import FrameErrorKind
from firmware_bridge.layouts import render_markdown
from firmware_bridge.testvectors import load

DOC = Path(__file__).resolve().parent.parent / "docs" / "firmware-protocol.md"


def test_payload_tables_match_the_layout_table() -> None:
    text = DOC.read_text()
    begin, end = "<!-- layouts:begin -->\n", "<!-- layouts:end -->"
    assert text[text.index(begin) + len(begin) : text.index(end)] == render_markdown()


def test_every_error_kind_and_the_crc_check_value_are_documented() -> None:
    text = DOC.read_text()
    for kind in FrameErrorKind:
        assert f"`{kind.value}`" in text, kind
    assert f"0x{CRC32C_CHECK:08X}" in text


def test_worked_example_is_the_vector() -> None:
    vec = next(v for v in load("valid.json") if v["name"] == "rain_no_clock")
    text = DOC.read_text()
    block = text[text.index("### Worked example") :]
    wire_line = next(line for line in block.splitlines() if line.startswith("wire "))
    assert wire_line.split(None, 1)[1].replace(" ", "") == vec["wire_hex"]
    parts = [line for line in block.splitlines() if line.split(" ", 1)[0] in ("header", "payload", "crc")]
    raw = "".join(line.split(None, 1)[1].split("  ")[0] for line in parts)
    assert raw.replace(" ", "") == vec["raw_hex"]
