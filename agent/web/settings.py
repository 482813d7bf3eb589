"""The ``[web]`` config section: the local status page and the /metrics endpoint."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
