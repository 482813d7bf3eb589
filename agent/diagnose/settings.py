"""The optional `[diagnose]` section of the agent configuration (pydantic; unknown keys are rejected).

Composed into ``AgentConfig`` as ``diagnose: DiagnoseSettings`` (agent/config.py); until then the
defaults apply (:func:`diagnose_settings`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DiagnoseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    skip: list[str] = Field(
        default_factory=list,
        description="Checks (names or prefixes) this site never runs, e.g. ['system.clock'] on a gateway "
        "whose clock is disciplined by GNSS PPS without chrony/timedatectl. `--skip` adds to it.",
    )
    listen_s: float = Field(
        default=3.0,
        gt=0,
        le=120,
        description="Seconds `agent diagnose` reads each serial port when the daemon is not running "
        "(`--listen` overrides it).",
    )
    expect_daemon: bool = Field(
        default=False,
        description="A daemon that is not running is a FAIL of the `daemon` check (else it is reported).",
    )


def diagnose_settings(cfg: Any) -> DiagnoseSettings:
    """The `[diagnose]` section of a loaded configuration, or the defaults when it has none."""
    found = getattr(cfg, "diagnose", None)
    return found if isinstance(found, DiagnoseSettings) else DiagnoseSettings()
