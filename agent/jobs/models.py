"""The model-update job: stages a bundle dropped into ``state_dir/bundles/inbox`` and switches to a
staged one only while the site is at level 0 (A/B slots, probation, rollback: agent/inference)."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from agent.errors import LewsError
from agent.inference.manager import ModelManager
from agent.publish.publisher import Publisher

log = logging.getLogger(__name__)


class ModelUpdatesJob:
    name = "models"

    def __init__(
        self, models: ModelManager, publisher: Publisher, inbox: Path, level: Callable[[], int]
    ) -> None:
        self.models, self.publisher, self.inbox, self._level = models, publisher, inbox, level

    def run(self) -> None:
        for entry in sorted(self.inbox.iterdir()) if self.inbox.is_dir() else []:
            if entry.name.startswith("."):
                continue  # still being copied (write to .name, then rename)
            try:
                self.models.stage_update(entry)
            except LewsError as exc:
                log.error("model update %s refused: %s", entry.name, exc)
            finally:  # staged (copied into a slot) or refused: either way it leaves the inbox
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink(missing_ok=True)
        if self.models.try_switch(lambda: self._level() == 0):
            status = self.models.status()
            self.publisher.set_backend(status["mode"], "normal")
