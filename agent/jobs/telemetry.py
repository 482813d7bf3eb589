"""The telemetry job: per-sensor summaries of the samples since the last run (data time)."""

from __future__ import annotations

from collections.abc import Callable

from agent.features.store import Store
from agent.publish.publisher import Publisher

TELEMETRY_CHANNELS: dict[str, tuple[str, ...]] = {
    "gnss": ("gnss.e_mm", "gnss.n_mm", "gnss.u_mm", "gnss.h_acc_mm", "gnss.num_sv"),
    "rain": ("rain.mm",),
    "seismic": ("seismic.pgv_mm_s", "seismic.trigger"),
    "device": ("device.supply_v", "device.temp_c"),
}


class TelemetryJob:
    name = "telemetry"

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        commit: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self.store, self.publisher, self._commit, self._clock = store, publisher, commit, clock
        self._from = clock()

    def run(self) -> None:
        now = self._clock()
        start, self._from = self._from, now
        self._commit(now)  # samples stamped before `now` are committed before they are read
        data = self.store.read_samples(start, now)
        with self.publisher.telemetry_batch():  # one outbox commit for the round
            for sensor, channels in TELEMETRY_CHANNELS.items():
                vals = {c: data[c][1] for c in channels if c in data and data[c][1].size}
                if not vals:
                    continue
                summary = {c: float(v.sum() if c == "rain.mm" else v[-1]) for c, v in vals.items()}
                count = max(v.size for v in vals.values())
                self.publisher.publish_telemetry(
                    sensor, summary, window_start=start, window_end=now, completeness=None, count=count
                )
