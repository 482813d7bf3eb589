"""The agent's configuration: one TOML file, validated by pydantic (unknown keys rejected).

Each library area owns its section model (sensors, store, inference, warning, mqtt); this module composes
them, defines the application's own sections (site, daemon, web, diagnose: their packages sit above this
module in the layers of docs/architecture.md, so their models cannot live there), loads the file safely
and says where the daemon keeps its state (:class:`StatePaths`).
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.compat import tomllib
from agent.errors import ConfigError
from agent.features.settings import StoreConfig
from agent.inference.settings import InferenceSettings
from agent.publish.settings import MqttSettings
from agent.sensors.settings import SensorsConfig
from agent.warning.settings import WarningSettings

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
        description="The systemd watchdog is pinged only while the evaluation loop completed a run within "
        "this many seconds and every worker thread (serial ports, step aggregation, store writer, loops) is "
        "alive; a silent sensor or a full disk is not a failure.",
    )
    max_worker_restarts: int = Field(
        default=5,
        ge=0,
        description="A supervised loop that failed more than 5 times in a row is restarted in a new thread, "
        "at most this often per hour (all loops together; counted in status as worker_restarts); then the "
        "daemon exits (exit code 1) for systemd to restart it.",
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


class WebSettings(BaseModel):
    """Local status page (``/``, plots, ``/diagnose``, ``/status.json``) and Prometheus ``/metrics``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(default=True, description="Serve the status page and /metrics from the daemon.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to bind. 127.0.0.1 (default) serves only this machine (reach it over an SSH "
        "tunnel); 0.0.0.0 serves the site network: then set basic auth.",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port, for tests).")
    basic_auth_user: str = Field(
        default="",
        pattern=r"^[^:]*$",
        description='HTTP basic-auth user name; "" disables authentication. Needs basic_auth_password_file.',
    )
    basic_auth_password_file: Path | None = Field(
        default=None,
        description="File whose first line is the basic-auth password (keep it mode 0600). "
        "The password is never logged.",
    )
    refresh_s: float = Field(
        default=30.0, ge=2.0, le=3600.0, description="The page reloads itself this often (seconds)."
    )
    plot_days: float = Field(default=7.0, gt=0, le=366, description="Days of data the page's plots show.")
    plot_cache_s: float = Field(
        default=30.0, ge=0, le=3600, description="Rendered plots are reused for this long (seconds)."
    )

    @model_validator(mode="after")
    def _auth_pair(self) -> WebSettings:
        if self.basic_auth_user and self.basic_auth_password_file is None:
            raise ValueError("web.basic_auth_user is set but web.basic_auth_password_file is not")
        if self.basic_auth_password_file is not None and not self.basic_auth_user:
            raise ValueError("web.basic_auth_password_file is set but web.basic_auth_user is empty")
        return self


class DiagnoseSettings(BaseModel):
    """The optional ``[diagnose]`` section: what `agent diagnose` checks on this site."""

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


@dataclass(frozen=True)
class StatePaths:
    """Where the daemon keeps its state: the state folder (status, history, alert state) and the store."""

    state_dir: Path
    store: Path

    @classmethod
    def from_config(cls, cfg: AgentConfig) -> StatePaths:
        return cls(state_dir=Path(cfg.daemon.state_dir), store=Path(cfg.store.path))
