"""The ``[store]`` config section: the SQLite time-series store (agent/features/store.py).

The root ``agent/config.py`` composes it; unknown keys are rejected and every field says what it means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StoreConfig(BaseModel):
    """The SQLite time-series store."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: Path = Field(default=Path("/var/lib/lews-agent/store.sqlite"), description="SQLite database file.")
    retention_days: float = Field(
        default=90.0,
        gt=0,
        description="Raw samples older than this are deleted; derived steps are kept for ever.",
    )
    wal: bool = Field(default=True, description="Journal in WAL mode (readers never block the writer).")
    synchronous: Literal["NORMAL", "FULL"] = Field(
        default="NORMAL",
        description="SQLite synchronous level. NORMAL in WAL mode never corrupts the file on power loss "
        "but may lose the last commits; see docs/store-and-pipeline.md.",
    )
    batch_max: int = Field(default=2000, gt=0, description="Most samples per write transaction.")
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="Longest time a sample waits in memory before it is committed."
    )
    max_backlog: int = Field(
        default=200_000,
        gt=0,
        description="Samples held in memory while the disk refuses writes; beyond it new samples are "
        "dropped and counted.",
    )
    max_size_mb: float | None = Field(
        default=None,
        gt=0,
        description="Cap on the store file (MiB); writes beyond it are refused like a full disk, so the "
        "store cannot eat the space the outbox needs. None: no cap.",
    )
