"""The wire mirror: the wire alarm's state published from the port thread the moment a change is
decoded, before and independently of the evaluation loop (software never delays it).

The level on the ``wire`` topic is the engine's (``level_of``: the wire rule, so an open or shorted
wire says the engine's ``fault_level``, not "normal"). The last state and its real ``changed_at`` are
restored at start from the last retained ``wire`` payload (outbox meta), so a restart publishes
nothing new on ``wire`` unless the state changed.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from agent.features.samples import Sample
from agent.snapshot import wire_input
from agent.warning.inputs import WireInput

log = logging.getLogger(__name__)


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class WireMirror:
    """Holds the current wire reading; ``on_samples`` is a pipeline subscriber (port threads)."""

    name = "wire"

    def __init__(
        self,
        publish: Callable[..., Any],
        level_of: Callable[[WireInput], int],
        on_change: Callable[[], None],
    ) -> None:
        self._publish = publish  # Publisher.publish_wire(state, changed_at=, level=)
        self._level_of = level_of
        self._on_change = on_change
        self._lock = threading.Lock()
        self._wire: WireInput | None = None
        self.counters: Counter[str] = Counter()

    def restore(self, last: dict[str, Any] | None) -> None:
        """Take the last published wire payload as the current state (its reading time = changed_at:
        a restored intact wire is stale until the next frame; a restored trip is held, as the engine
        holds it)."""
        if last is None:
            return
        try:
            changed_at = parse_iso(str(last["changed_at"]))
            wi = wire_input(int(last["state"]), changed_at, changed_at)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("stored wire state unreadable (%s): the next frame is published as new", exc)
            return
        if wi is not None:
            with self._lock:
                self._wire = wi
            self.counters["restored"] += 1
            log.info("wire state restored: %s since %s", wi.state.name.lower(), last["changed_at"])

    def current(self) -> WireInput | None:
        with self._lock:
            return self._wire

    def on_samples(self, _port: str, samples: Sequence[Sample]) -> None:
        for s in samples:
            if s.channel != "wire.state":
                continue
            with self._lock:
                prev = self._wire
                changed = prev is None or int(prev.state) != int(s.value)
                wi = wire_input(int(s.value), s.t, s.t if changed or prev is None else prev.changed_at)
                if wi is None:
                    self.counters["unknown_state"] += 1
                    continue
                self._wire = wi
            if changed:
                self._publish(int(wi.state), changed_at=wi.changed_at, level=self._level_of(wi))
                self.counters["changes"] += 1
                self._on_change()
