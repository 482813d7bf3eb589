"""A/B model slots on disk: install a new bundle beside the current one, switch atomically, roll back.

Layout under STATE_DIR: `slot-a/`, `slot-b/` (bundle copies) and `active.json`
(`{"slot": "a", "previous": "b" | null, "changed_at": "...Z", "reason": "..."}`), replaced atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from agent.compat import UTC
from agent.errors import ModelUpdateError

log = logging.getLogger(__name__)

SLOTS = ("a", "b")
STATE_FILE = "active.json"


class ABStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def slot_dir(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise ModelUpdateError(f"unknown model slot {slot!r}", fix=f"use one of {SLOTS}")
        return self.root / f"slot-{slot}"

    def state(self) -> dict[str, Any]:
        path = self.root / STATE_FILE
        if not path.is_file():
            return {"slot": None, "previous": None}
        try:
            data: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelUpdateError(
                f"{path} is corrupt ({exc})",
                fix=f"delete {path}; the agent then starts from inference.bundle_dir",
            ) from exc
        return data

    def active(self) -> str | None:
        slot = self.state().get("slot")
        return str(slot) if slot in SLOTS else None

    def previous(self) -> str | None:
        slot = self.state().get("previous")
        return str(slot) if slot in SLOTS and self.slot_dir(str(slot)).is_dir() else None

    def inactive(self) -> str:
        return "b" if self.active() == "a" else "a"

    def stage(self, src: Path) -> tuple[str, Path]:
        """Copy bundle `src` into the inactive slot (replacing what was there); return (slot, dir)."""
        src = Path(src)
        if not (src / "manifest.json").is_file():
            raise ModelUpdateError(f"{src} is not a bundle (no manifest.json)", fix="pass a bundle directory")
        slot = self.inactive()
        dst = self.slot_dir(slot)
        tmp = self.root / f".slot-{slot}.incoming"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(src, tmp)  # engines/ too: their sidecars are checked against this device at load
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelUpdateError(
                f"cannot copy {src} into {dst} ({exc})",
                fix="check free space and permissions of the state dir",
            ) from exc
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
        log.info("staged %s into slot %s (%s)", src, slot, dst)
        return slot, dst

    def activate(self, slot: str, reason: str) -> None:
        self.slot_dir(slot)
        current = self.active()
        state = {
            "slot": slot,
            "previous": current if current != slot else self.state().get("previous"),
            "changed_at": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reason": reason,
        }
        path = self.root / STATE_FILE
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        log.info("active model slot is now %s (%s)", slot, reason)
