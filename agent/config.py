"""The agent's configuration: one TOML file, validated by pydantic (unknown keys rejected).

Each area owns its section model (sensors, store, inference, warning, mqtt); this module composes them,
loads the file safely and renders a commented example (`agent config example`).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.compat import tomllib
from agent.diagnose.settings import DiagnoseSettings
from agent.errors import ConfigError
from agent.inference.settings import InferenceSettings
from agent.publish.settings import MqttSettings
from agent.sensors.settings import SensorsConfig, StoreConfig
from agent.warning.settings import WarningSettings
from agent.web.settings import WebSettings

log = logging.getLogger(__name__)


class SiteConfig(BaseModel):
    """Who this gateway is: names used in MQTT topics and every payload."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    site: str = Field(
        default="demo-site",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Site name (lower case, digits, - and _): the {site} of lews/v1/{site}/{node}/...",
    )
    node: str = Field(
        default="gw1",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
        description="Gateway name within the site: the {node} of lews/v1/{site}/{node}/...",
    )
    description: str = Field(default="", description="Free text shown in status and reports.")


class DaemonConfig(BaseModel):
    """Timings of the daemon's own loops."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    state_dir: Path = Field(
        default=Path("/var/lib/lews-agent"),
        description="Where the daemon keeps its state (alert state, status file, bundle slots).",
    )
    evaluate_interval_s: float = Field(
        default=5.0, gt=0, description="How often the warning engine is evaluated (and on every wire change)."
    )
    forecast_interval_s: float = Field(
        default=60.0, gt=0, description="How often the forecast is recomputed when a new step completed."
    )
    telemetry_interval_s: float = Field(
        default=60.0, gt=0, description="How often per-sensor telemetry is published."
    )
    watchdog_progress_s: float = Field(
        default=30.0,
        gt=0,
        description="The systemd watchdog is pinged only if the pipeline and the evaluation loop made "
        "progress within this many seconds.",
    )
    max_worker_restarts: int = Field(
        default=5, ge=0, description="A crashed worker thread is restarted at most this often per hour."
    )
    site_raster: Path | None = Field(
        default=None,
        description="The site's static raster channels (.npz with smi, ndbi, ndvi, ndwi, slope, dem) for the "
        "U-Net risk map; unset: no spatial source.",
    )
    riskmap_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="Recompute the risk map at most this often (data time), and whenever the rain event's "
        "intensity or duration has changed.",
    )
    refresh_steps_each_evaluation: bool = Field(
        default=False,
        description="Recompute the daily/hourly steps touched since the last evaluation at every evaluation "
        "(for time-compressed demos and replays; live gateways refresh them on the pipeline's schedule).",
    )


class AgentConfig(BaseModel):
    """The whole agent configuration (`agent config example` prints it with every field described)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    site: SiteConfig = Field(default_factory=SiteConfig, description="Identity of this gateway.")
    daemon: DaemonConfig = Field(default_factory=DaemonConfig, description="Daemon loops and state.")
    sensors: SensorsConfig = Field(default_factory=SensorsConfig, description="Serial ports and sensors.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="SQLite time-series store.")
    inference: InferenceSettings = Field(
        default_factory=InferenceSettings, description="Model bundle and runtime."
    )
    warning: WarningSettings = Field(default_factory=WarningSettings, description="Warning rules.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker, outbox, commands.")
    web: WebSettings = Field(default_factory=WebSettings, description="Local status page and metrics.")
    diagnose: DiagnoseSettings = Field(
        default_factory=DiagnoseSettings, description="What `agent diagnose` checks on this site."
    )


def _check_file_safety(path: Path) -> None:
    """Refuse a config another user could have written (it controls what the agent trusts)."""
    st = path.stat()
    if st.st_mode & stat.S_IWOTH:
        raise ConfigError(
            f"{path} is world-writable: anyone on this machine could change what the agent trusts",
            fix=f"chmod o-w {path}",
        )


def _format_validation(path: Path, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors()[:10]:
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key")
        else:
            lines.append(f"{where}: {err['msg']}")
    return ConfigError(
        f"{path} is not a valid agent configuration:\n  " + "\n  ".join(lines),
        fix="compare with `agent config example`; every key is described there",
    )


def config_from_dict(data: dict[str, Any], *, source: Path = Path("<dict>")) -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(source, exc) from exc


def load_config(path: Path | str) -> AgentConfig:
    """Read, check and validate a TOML configuration file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"configuration file {path} not found", fix="create one with `agent config example`"
        )
    _check_file_safety(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", fix="fix the syntax at the line named") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text", fix="save the file as UTF-8") from exc
    return resolve_relative_paths(config_from_dict(data, source=path), path.parent)


def resolve_relative_paths(config: AgentConfig, base: Path) -> AgentConfig:
    """Relative file paths in the config are relative to the config file's folder."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    data = config.model_dump()
    data["daemon"]["state_dir"] = fix(config.daemon.state_dir)
    if config.daemon.site_raster is not None:
        data["daemon"]["site_raster"] = fix(config.daemon.site_raster)
    data["store"]["path"] = fix(config.store.path)
    data["inference"]["bundle_dir"] = fix(config.inference.bundle_dir)
    if config.inference.public_key is not None:
        data["inference"]["public_key"] = fix(config.inference.public_key)
    data["mqtt"]["outbox"]["path"] = fix(config.mqtt.outbox.path)
    return AgentConfig.model_validate(data)
