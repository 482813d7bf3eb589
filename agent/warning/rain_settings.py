"""``[warning.rainfall.calibrated]`` (usually per site: ``[warning.sites.NAME.rainfall.calibrated]``).

Written by ``agent-export calibrate rain`` (docs/rain-thresholds.md). When present, the rainfall source is
graded by these site-calibrated rules instead of the global intensity-duration curve (which is still
evaluated and shown in the evidence for comparison).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.features.rain_windows import day_predictor_names, hour_predictor_names

KNOWN_PREDICTORS = frozenset(day_predictor_names() + hour_predictor_names())


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CalibratedLevel(_Section):
    """One level's rule: a rain total at or above ``threshold`` mm (kind ``total``), or the logistic model's
    daily landslide probability at or above ``threshold`` (kind ``probability``)."""

    kind: Literal["total", "probability"] = Field(
        description="total: a rain total in mm; probability: the model's P."
    )
    predictor: str = Field(
        description="rain_Nh / rain_Nd / ante_Nd for a total; a label for a probability model."
    )
    threshold: float = Field(
        gt=0, description="mm (total) or probability (0-1] at or above which the level is reached."
    )
    intercept: float = Field(
        default=0.0, description="Logistic model: P = 1/(1+exp(-(intercept + sum coef*x)))."
    )
    coef: dict[str, float] = Field(
        default_factory=dict,
        description="Logistic coefficients per predictor (per mm); shown as the probability.",
    )
    validation: dict[str, Any] = Field(
        default_factory=dict,
        description="Figures the level was chosen with (POD, false alarms/yr, ...), copied to alerts.",
    )

    @model_validator(mode="after")
    def _check(self) -> CalibratedLevel:
        unknown = [n for n in self.coef if n not in KNOWN_PREDICTORS]
        if self.kind == "total" and self.predictor not in KNOWN_PREDICTORS:
            unknown.append(self.predictor)
        if unknown:
            raise ValueError(f"unknown rain predictor(s) {unknown}; known: {sorted(KNOWN_PREDICTORS)}")
        if self.kind == "probability":
            if not self.coef:
                raise ValueError("a probability level needs its model's coef")
            if self.threshold > 1:
                raise ValueError(f"a probability threshold must be in (0, 1], got {self.threshold}")
        return self

    @property
    def inputs(self) -> list[str]:
        return [self.predictor] if self.kind == "total" else list(self.coef)


class CalibratedRain(_Section):
    source: str = Field(default="", description="Where the calibration came from (command and table).")
    hold_after_rain_s: float = Field(
        default=6 * 3600.0,
        ge=0,
        description="Keep a level this long after its predictor fell below (Sitka: 6 h).",
    )
    day_offset_h: float = Field(
        default=0.0, ge=-24, le=24, description="The gauge's day starts this many hours after 00:00 UTC."
    )
    events: int | None = Field(default=None, description="Events the calibration rests on (for the record).")
    years: float | None = Field(default=None, description="Years of record the calibration rests on.")
    advisory: CalibratedLevel | Literal["off"] = Field(default="off", description="Level 1 rule, or off.")
    watch: CalibratedLevel | Literal["off"] = Field(default="off", description="Level 2 rule, or off.")
    warning: CalibratedLevel | Literal["off"] = Field(default="off", description="Level 3 rule, or off.")

    def levels(self) -> list[tuple[int, CalibratedLevel]]:
        out = [(k, v) for k, v in ((1, self.advisory), (2, self.watch), (3, self.warning)) if v != "off"]
        return [(k, v) for k, v in out if isinstance(v, CalibratedLevel)]
