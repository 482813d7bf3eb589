"""The ``[warning]`` config section: per-source thresholds, freshness limits and the alert state machine.

Every default and where it comes from is documented in docs/warning-engine.md. Per-site thresholds:
``sites.<name>`` holds a partial section (same keys) merged over the defaults by :meth:`for_site`.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from agent.errors import ConfigError
from agent.warning.rain_settings import CalibratedRain

HOUR = 3600.0
DAY = 86400.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _none_to_off(value: object) -> object:
    return "off" if value is None else value


# A threshold, or "off" to disable that level (TOML has no null; None is accepted from Python).
Threshold = Annotated[float | Literal["off"], BeforeValidator(_none_to_off)]


class LevelThresholds(_Section):
    """Thresholds for levels 1 (advisory), 2 (watch), 3 (warning); ``"off"`` disables a level.

    All three keys are required, so a partial table cannot disable a level by omission."""

    advisory: Threshold = Field(description='Threshold for level 1 (advisory); "off" disables it.')
    watch: Threshold = Field(description='Threshold for level 2 (watch); "off" disables it.')
    warning: Threshold = Field(description='Threshold for level 3 (warning, evacuate); "off" disables it.')

    def as_tuple(self) -> tuple[float | None, float | None, float | None]:
        a, w, x = (None if v == "off" else float(v) for v in (self.advisory, self.watch, self.warning))
        return (a, w, x)

    def check_order(self, name: str, *, increasing: bool) -> None:
        values = [v for v in self.as_tuple() if v is not None]
        if any(v <= 0 for v in values):
            raise ValueError(f"{name}: thresholds must be > 0, got {self.as_tuple()}")
        pairs = itertools.pairwise(values)
        if not all((a <= b) if increasing else (a >= b) for a, b in pairs):
            order = "increase" if increasing else "decrease"
            raise ValueError(
                f"{name}: thresholds must {order} from advisory to warning, got {self.as_tuple()}"
            )


class PerLevelSeconds(_Section):
    """A duration in seconds for each published level 1..3."""

    advisory: float = Field(ge=0, description="Seconds for level 1 (advisory).")
    watch: float = Field(ge=0, description="Seconds for level 2 (watch).")
    warning: float = Field(ge=0, description="Seconds for level 3 (warning).")

    def for_level(self, level: int) -> float:
        return (0.0, self.advisory, self.watch, self.warning)[max(0, min(3, level))]


class WireSettings(_Section):
    max_age_s: float = Field(
        default=300.0, gt=0, description="A wire reading older than this is NO_DATA (unless it says tripped)."
    )
    fault_level: int = Field(
        default=1, ge=1, le=3, description="Level for open circuit / short: the wire cannot confirm safety."
    )


class ForecastSettings(_Section):
    max_age_s: float = Field(default=26 * HOUR, gt=0, description="Forecast older than this is NO_DATA.")
    min_completeness: float = Field(
        default=0.8, ge=0, le=1, description="Minimum input completeness of the model."
    )
    displacement_mm: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=2.0, watch=5.0, warning=10.0),
        description="Predicted displacement per model step (mm/step; for a multi-horizon bundle the mean "
        "rate over its warning horizon, e.g. 7 days) for levels 1..3; horizon h's exceedance "
        "probabilities in the forecast payload are for these x h mm. Site-specific.",
    )
    interval_policy: Literal["point", "lower", "upper"] = Field(
        default="point",
        description="Which value of the forecast grades the level: the point prediction, the conformal "
        "interval's lower bound (confident) or its upper bound (cautious).",
    )
    exceedance_probability: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=0.3, watch=0.5, warning=0.7),
        description="Level k is reached when P(mean displacement per step over the warning horizon > "
        "displacement_mm[k]) >= this.",
    )
    alarm_rate_level: int = Field(
        default=2,
        ge=1,
        le=3,
        description="Level raised when the model says the K-day velocity will exceed the site's alarm rate V "
        "within the horizon (P >= the bundle's calibrated cutoff).",
    )
    alarm_velocity_mm_per_day: float | None = Field(
        default=None,
        gt=0,
        description="The site's alarm rate V (mm/day); default: the bundle's, derived from the station's "
        "history (docs/displacement.md). Applies to bundles whose warning probability comes from the "
        "forecast distribution.",
    )
    alarm_k_days: int | None = Field(
        default=None, ge=1, le=60, description="K of the K-day velocity; default: the bundle's (7)."
    )

    @model_validator(mode="after")
    def _order(self) -> ForecastSettings:
        self.displacement_mm.check_order("forecast.displacement_mm", increasing=True)
        for p in self.exceedance_probability.as_tuple():
            if p is not None and not 0 < p <= 1:
                raise ValueError(f"forecast.exceedance_probability must be in (0, 1], got {p}")
        return self


class VelocitySettings(_Section):
    max_age_s: float = Field(
        default=26 * HOUR, gt=0, description="Displacement series older than this is NO_DATA."
    )
    window_s: float = Field(
        default=3 * DAY, gt=0, description="Velocity = least-squares slope over this trailing window."
    )
    min_points: int = Field(default=3, ge=2, description="Minimum valid points in the window.")
    min_completeness: float = Field(
        default=0.7, ge=0, le=1, description="Minimum mean step completeness in the window."
    )
    mm_per_day: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=1.0, watch=5.0, warning=20.0),
        description="Horizontal velocity (mm/day) for levels 1..3. Project defaults: set per site.",
    )

    @model_validator(mode="after")
    def _order(self) -> VelocitySettings:
        self.mm_per_day.check_order("velocity.mm_per_day", increasing=True)
        return self


class InverseVelocitySettings(_Section):
    max_age_s: float = Field(
        default=26 * HOUR, gt=0, description="Displacement series older than this is NO_DATA."
    )
    window_s: float = Field(
        default=30 * DAY, gt=0, description="Longest trailing span searched for the accelerating phase."
    )
    min_points: int = Field(default=5, ge=3, description="Minimum velocity points in the 1/v fit.")
    min_r2: float = Field(default=0.8, ge=0, le=1, description="Minimum R^2 of the linear 1/v-vs-t fit.")
    min_velocity_mm_day: float = Field(
        default=1.0,
        gt=0,
        description="The last velocity must reach this for a failure-time prediction (noise guard).",
    )
    min_acceleration_ratio: float = Field(
        default=1.2,
        gt=1,
        description="The fitted velocity must rise by this factor over the fit (1/v falls by it): not creep.",
    )
    smoothing_points: int = Field(
        default=1, ge=1, description="Moving-average length on velocities before 1/v (1 = none)."
    )
    min_completeness: float = Field(
        default=0.7, ge=0, le=1, description="Minimum mean step completeness in the fit."
    )
    time_to_failure_s: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=14 * DAY, watch=3 * DAY, warning=1 * DAY),
        description="Predicted time to failure (s) at or below which levels 1..3 are reached.",
    )

    @model_validator(mode="after")
    def _order(self) -> InverseVelocitySettings:
        self.time_to_failure_s.check_order("inverse_velocity.time_to_failure_s", increasing=False)
        return self


class RainfallSettings(_Section):
    max_age_s: float = Field(default=2 * HOUR, gt=0, description="Rain summary older than this is NO_DATA.")
    min_completeness: float = Field(
        default=0.8, ge=0, le=1, description="Minimum completeness of the rain record."
    )
    alpha: float = Field(default=2.20, gt=0, description="ID threshold I = alpha * D^-beta (I mm/h, D h).")
    beta: float = Field(default=0.44, ge=0, description="ID threshold exponent (I = alpha * D^-beta).")
    min_duration_h: float = Field(
        default=0.1, gt=0, description="Shortest duration the curve is valid for (h)."
    )
    max_duration_h: float = Field(
        default=1000.0, gt=0, description="Longest duration the curve is valid for (h)."
    )
    curve_source: str = Field(
        default="Guzzetti et al. (2008), Landslides 5:3-17, global ID threshold",
        description="Citation of the ID curve, copied into every rainfall evidence.",
    )
    multiples: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=1.0, watch=2.0, warning="off"),
        description="Levels 1..3 at these multiples of the ID threshold intensity. Rain alone reaches "
        "level 3 only once a site-calibrated multiple is set (the global curve is a minimum threshold).",
    )
    calibrated: CalibratedRain | None = Field(
        default=None,
        description="Site-calibrated rain rules from `agent-export calibrate rain` (docs/rain-thresholds.md);"
        " when set they grade the rainfall source and the ID curve is only shown beside them.",
    )

    @model_validator(mode="after")
    def _order(self) -> RainfallSettings:
        self.multiples.check_order("rainfall.multiples", increasing=True)
        if self.min_duration_h >= self.max_duration_h:
            raise ValueError("rainfall.min_duration_h must be < rainfall.max_duration_h")
        return self


class SeismicSettings(_Section):
    max_age_s: float = Field(default=600.0, gt=0, description="Seismic summary older than this is NO_DATA.")
    min_completeness: float = Field(
        default=0.5, ge=0, le=1, description="Minimum completeness of the seismic window."
    )
    pgv_mm_s: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=34.0, watch=81.0, warning="off"),
        description="PGV (mm/s) for levels 1..3; defaults: MMI V / VI lower bounds of Wald et al. (1999).",
    )
    trigger_count: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=5.0, watch="off", warning="off"),
        description="STA/LTA trigger-ons in the window for levels 1..3.",
    )

    @model_validator(mode="after")
    def _order(self) -> SeismicSettings:
        self.pgv_mm_s.check_order("seismic.pgv_mm_s", increasing=True)
        self.trigger_count.check_order("seismic.trigger_count", increasing=True)
        return self


class SpatialSettings(_Section):
    max_age_s: float = Field(
        default=26 * HOUR, gt=0, description="Risk-map summary older than this is NO_DATA."
    )
    min_completeness: float = Field(
        default=0.8, ge=0, le=1, description="Minimum fraction of the site's tiles evaluated."
    )
    area_fraction: LevelThresholds = Field(
        default_factory=lambda: LevelThresholds(advisory=0.05, watch=0.15, warning="off"),
        description="Fraction of the site area above the probability threshold for levels 1..3.",
    )

    @model_validator(mode="after")
    def _order(self) -> SpatialSettings:
        self.area_fraction.check_order("spatial.area_fraction", increasing=True)
        return self


class DisagreementSettings(_Section):
    no_motion_mm_day: float = Field(
        default=0.5, ge=0, description="GNSS velocity below this (with fresh data) counts as 'no motion'."
    )
    strong_motion_level: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Velocity/inverse-velocity/forecast level that counts as 'strong motion'.",
    )


class AlertSettings(_Section):
    hysteresis_band: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Fraction by which evidence must fall below a threshold before lowering.",
    )
    min_hold_s: PerLevelSeconds = Field(
        default_factory=lambda: PerLevelSeconds(advisory=1 * HOUR, watch=3 * HOUR, warning=6 * HOUR),
        description="Minimum time a published level is held after it was entered.",
    )
    validity_s: PerLevelSeconds = Field(
        default_factory=lambda: PerLevelSeconds(advisory=26 * HOUR, watch=26 * HOUR, warning=26 * HOUR),
        description="A published level expires if no fresh source re-confirms it for this long.",
    )
    cooldown_s: float = Field(
        default=6 * HOUR,
        ge=0,
        description="After a resolve, a new trigger below cooldown_bypass_level waits this long.",
    )
    cooldown_bypass_level: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Triggers at or above this level ignore the cooldown (the wire always does).",
    )


class WarningSettings(_Section):
    """Thresholds and timings of the warning engine (docs/warning-engine.md)."""

    wire: WireSettings = Field(default_factory=WireSettings, description="Wire alarm rule.")
    forecast: ForecastSettings = Field(
        default_factory=ForecastSettings, description="Displacement forecast rule."
    )
    velocity: VelocitySettings = Field(default_factory=VelocitySettings, description="GNSS velocity rule.")
    inverse_velocity: InverseVelocitySettings = Field(
        default_factory=InverseVelocitySettings, description="Fukuzono inverse-velocity rule."
    )
    rainfall: RainfallSettings = Field(default_factory=RainfallSettings, description="Rainfall ID rule.")
    seismic: SeismicSettings = Field(default_factory=SeismicSettings, description="Seismic rule.")
    spatial: SpatialSettings = Field(default_factory=SpatialSettings, description="Spatial risk rule.")
    disagreement: DisagreementSettings = Field(
        default_factory=DisagreementSettings, description="When wire and other evidence disagree."
    )
    alert: AlertSettings = Field(default_factory=AlertSettings, description="The alert state machine.")
    sites: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-site overrides: site name -> partial [warning] section merged over these values.",
    )

    def for_site(self, site: str) -> WarningSettings:
        """These settings with ``sites[site]`` merged over them (unknown keys rejected)."""
        override = self.sites.get(site)
        if not override:
            return self
        merged = _deep_merge(self.model_dump(exclude={"sites"}), override)
        try:
            return WarningSettings.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(
                f"[warning.sites.{site}] is not a valid warning section: {exc.errors()[0]['msg']} "
                f"at {'.'.join(str(p) for p in exc.errors()[0]['loc'])}",
                fix="use the same keys as [warning] (see `agent config example`)",
            ) from exc


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
