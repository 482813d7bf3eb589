"""The status job: the daemon's status (what ``agent status``, the status page and the tests read) as
``state_dir/status.json`` (atomic; its temporary file removed on failure) and a history record. An
I/O error here is counted, never a reason to stop the evaluation."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.history import History
from agent.jobs.supervise import write_json_atomic

log = logging.getLogger(__name__)


class StatusJob:
    name = "status"

    def __init__(self, path: Path, history: History, build: Callable[[], dict[str, Any]]) -> None:
        self.path, self.history, self.build = path, history, build
        self.counters: Counter[str] = Counter()

    def run(self) -> None:
        status = self.build()
        try:
            write_json_atomic(self.path, status)
        except OSError as exc:
            self.counters["status_write_failed"] += 1
            n = self.counters["status_write_failed"]
            if n == 1 or n % 100 == 0:
                log.warning("status file not written (%d times): %s", n, exc)
        self.history.record_status(status)
