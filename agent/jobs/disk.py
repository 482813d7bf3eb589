"""The disk job: watches the free space of the state, store and outbox filesystems. Below the low-water
mark, or while the store or the outbox refuse writes, the daemon is *degraded*, not dead: telemetry is
shed (the space left is for alarms), alarms the outbox cannot keep go out live (publisher), and the
retained status says "disk full" with the numbers. It recovers by itself when space returns."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.features.store import Store
from agent.publish.publisher import Publisher

log = logging.getLogger(__name__)

LOW_WATER_BYTES = 512 * 1024  # or 10 % of a smaller filesystem: shed telemetry below it
MIB = 1024 * 1024


def free_space(path: Path) -> tuple[int, int]:
    """(free bytes for an unprivileged writer, total bytes) of the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class DiskJob:
    name = "disk"

    def __init__(self, paths: Sequence[Path], store: Store, publisher: Publisher) -> None:
        self.paths = list(dict.fromkeys(paths))  # directories, in order, duplicates removed
        self.store, self.publisher = store, publisher
        self.state: dict[str, Any] = {"state": "ok"}
        self._store_errors = 0
        self._live = 0
        self.episodes = 0

    def _measure(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        seen: set[int] = set()
        for path in self.paths:
            try:
                dev = os.stat(path).st_dev
                if dev in seen:
                    continue
                seen.add(dev)
                free, total = free_space(path)
            except OSError as exc:
                out.append({"path": str(path), "error": str(exc)})
                continue
            out.append({"path": str(path), "free_bytes": free, "total_bytes": total})
        return out

    def run(self) -> None:
        filesystems = self._measure()
        low = [
            fs
            for fs in filesystems
            if "free_bytes" in fs and fs["free_bytes"] < min(LOW_WATER_BYTES, fs["total_bytes"] // 10)
        ]
        store_errors = int(self.store.stats_snapshot().get("write_errors", 0))
        live = int(self.publisher.counters["live_not_durable"] + self.publisher.counters["live_unsent"])
        refusing = store_errors > self._store_errors and self.store.last_error is not None
        refusing = refusing or live > self._live
        self._store_errors, self._live = store_errors, live
        full = bool(low) or refusing
        was_full = self.state["state"] == "full"
        # a refusal ends when free space is back above the mark and no new refusal came this run
        state = "full" if full or (was_full and low) else "ok"
        self.state = {
            "state": state,
            "filesystems": filesystems,
            "store_write_errors": store_errors,
            "alarms_sent_live": live,
            "telemetry_shed": int(self.publisher.counters["telemetry_shed"]),
        }
        self.publisher.shed_droppable = state == "full"
        if state == "full":
            fs = (low or [f for f in filesystems if "free_bytes" in f] or [{}])[0]
            reason = (
                f"disk full: {fs.get('free_bytes', 0) / MIB:.2f} MiB free of "
                f"{fs.get('total_bytes', 0) / MIB:.2f} MiB on {fs.get('path', '?')}; "
                f"store write errors {store_errors}; alarms sent live (not durable) {live}"
            )
            self.state["reason"] = reason
            if not was_full:
                self.episodes += 1
                log.error("%s: telemetry shed, alarms still published", reason)
            self.publisher.set_degraded(reason)
        elif was_full:
            log.warning("disk space back: leaving degraded mode")
            self.publisher.set_degraded(None)
