"""Dynamic Landslide Risk Index (LSI) of seed 004, eqs. 4-5, numpy only (runs on the gateway).

Interpretation (docs/riskmap.md explains why): every factor is min-max scaled to [0, 1] with the
site's reference range; a factor with a negative weight (NDVI: vegetation stabilises) enters as
``1 - x`` with weight ``|w|``; the weighted sum is divided by ``sum(|w|)`` of the factors present, so
the static score ``S`` is a weighted mean in [0, 1]. The rainfall multiplier ``R_m = (P/P0)^a (D/D0)^b``
(eq. 5) scales it and a logistic maps it to (0, 1)::

    LSI = sigmoid(gain * (R_m * S - centre))

so LSI is bounded, non-decreasing in rain intensity P and duration D, and NaN only where too few
factors are known (counted in :class:`LsiResult`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.errors import WarningRuleError

# Factor order of Table 1 (w1..w6). The 7-channel stack uses its own order (raster_channels.CHANNELS).
FACTORS: tuple[str, ...] = ("slope", "dem", "ndvi", "ndwi", "smi", "ndbi")


class FactorRange(BaseModel):
    """Reference range of one factor for min-max scaling: ``lo`` maps to 0 and ``hi`` to 1 (clipped)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lo: float = Field(description="Value that scales to 0 (e.g. 0 deg slope, site's lowest DEM).")
    hi: float = Field(description="Value that scales to 1 (e.g. 60 deg slope, site's highest DEM).")

    @model_validator(mode="after")
    def _ordered(self) -> FactorRange:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.hi > self.lo):
            raise ValueError(f"factor range needs finite lo < hi, got lo={self.lo} hi={self.hi}")
        return self


def _default_weights() -> dict[str, float]:
    # seed 004, Table 1: w1 slope .25, w2 DEM .15, w3 NDVI -.2, w4 NDWI .2, w5 SMI .1, w6 NDBI .1
    return {"slope": 0.25, "dem": 0.15, "ndvi": -0.2, "ndwi": 0.2, "smi": 0.1, "ndbi": 0.1}


def _default_ranges() -> dict[str, FactorRange]:
    return {
        "slope": FactorRange(lo=0.0, hi=60.0),
        "dem": FactorRange(lo=0.0, hi=3000.0),
        "ndvi": FactorRange(lo=-1.0, hi=1.0),
        "ndwi": FactorRange(lo=-1.0, hi=1.0),
        "smi": FactorRange(lo=0.0, hi=1.0),
        "ndbi": FactorRange(lo=-1.0, hi=1.0),
    }


class LsiParams(BaseModel):
    """Per-site LSI configuration (weights, reference ranges and rain references)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    weights: dict[str, float] = Field(
        default_factory=_default_weights,
        description="Weight per factor (slope, dem, ndvi, ndwi, smi, ndbi); seed 004 Table 1 by default. "
        "A negative weight means the factor lowers risk.",
    )
    ranges: dict[str, FactorRange] = Field(
        default_factory=_default_ranges,
        description="Min-max reference range per factor, in the factor's unit (deg, m, index, fraction).",
    )
    p0_mm_h: float = Field(default=10.0, gt=0, description="Reference rain intensity P0 in mm/h (eq. 5).")
    d0_h: float = Field(default=24.0, gt=0, description="Reference rain duration D0 in hours (eq. 5).")
    alpha: float = Field(default=1.2, ge=0, description="Exponent of P/P0 (Table 1: 1.2).")
    beta: float = Field(default=0.8, ge=0, description="Exponent of D/D0 (Table 1: 0.8).")
    rm_max: float = Field(
        default=10.0, gt=0, description="Upper clamp of R_m, so an absurd rain value cannot overflow."
    )
    gain: float = Field(
        default=8.0, gt=0, description="Slope of the logistic: LSI = sigmoid(gain*(R_m*S - centre))."
    )
    centre: float = Field(
        default=0.5, description="Value of R_m*S that maps to LSI 0.5 (the reference storm on a mid slope)."
    )
    min_weight_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="A pixel needs factors carrying at least this fraction of sum(|w|); else its LSI is NaN.",
    )

    @model_validator(mode="after")
    def _complete(self) -> LsiParams:
        if set(self.weights) != set(FACTORS):
            raise ValueError(f"weights must name exactly {list(FACTORS)}, got {sorted(self.weights)}")
        if set(self.ranges) != set(FACTORS):
            raise ValueError(f"ranges must name exactly {list(FACTORS)}, got {sorted(self.ranges)}")
        if sum(abs(w) for w in self.weights.values()) <= 0:
            raise ValueError("at least one LSI weight must be non-zero")
        return self


@dataclass(frozen=True)
class LsiResult:
    """LSI map plus what it could not judge."""

    lsi: np.ndarray  # float32, same shape as the factors; NaN where too few factors are known
    static_score: np.ndarray  # S in [0, 1] (NaN likewise)
    rainfall_multiplier: float
    nan_pixels: int  # pixels with NaN LSI (too few finite factors)
    partial_pixels: int  # pixels computed from a subset of the factors (renormalised weights)


def rainfall_multiplier(p_mm_h: float, d_h: float, params: LsiParams) -> float:
    """Eq. 5: R_m = (P/P0)^alpha * (D/D0)^beta, clamped to [0, rm_max]."""
    if not (np.isfinite(p_mm_h) and np.isfinite(d_h)):
        raise WarningRuleError(
            f"LSI rain inputs must be finite, got P={p_mm_h} mm/h, D={d_h} h",
            fix="pass the measured rain intensity and duration; use 0 for no rain",
        )
    if p_mm_h < 0 or d_h < 0:
        raise WarningRuleError(
            f"LSI rain inputs must be >= 0, got P={p_mm_h} mm/h, D={d_h} h",
            fix="check the rain gauge feed: intensity and duration cannot be negative",
        )
    rm = (p_mm_h / params.p0_mm_h) ** params.alpha * (d_h / params.d0_h) ** params.beta
    return float(min(rm, params.rm_max))


def scale_factor(values: np.ndarray, rng: FactorRange) -> np.ndarray:
    """Min-max scale to [0, 1] with the reference range (clipped); NaN stays NaN."""
    x = (np.asarray(values, dtype=np.float64) - rng.lo) / (rng.hi - rng.lo)
    return np.clip(x, 0.0, 1.0)


def static_score(factors: Mapping[str, np.ndarray], params: LsiParams) -> tuple[np.ndarray, np.ndarray]:
    """S in [0, 1]: weighted mean of the scaled factors (negative weight -> 1 - x), per pixel.

    Returns ``(S, known_weight_fraction)``. Missing factors (NaN) are left out and the weights of
    the rest renormalised; ``S`` is NaN where the known fraction is below ``min_weight_fraction``.
    """
    missing = set(FACTORS) - set(factors)
    if missing:
        raise WarningRuleError(
            f"LSI factors missing: {sorted(missing)}",
            fix=f"pass all of {list(FACTORS)} (arrays of one shape; NaN where unknown)",
        )
    shape = np.shape(factors[FACTORS[0]])
    total = sum(abs(params.weights[f]) for f in FACTORS)
    acc = np.zeros(shape, dtype=np.float64)
    known = np.zeros(shape, dtype=np.float64)
    for name in FACTORS:
        arr = np.asarray(factors[name], dtype=np.float64)
        if arr.shape != shape:
            raise WarningRuleError(
                f"LSI factor {name!r} has shape {arr.shape}, expected {shape}",
                fix="resample every factor onto the same grid before computing the LSI",
            )
        w = params.weights[name]
        if w == 0:
            continue
        x = scale_factor(arr, params.ranges[name])
        if w < 0:
            x = 1.0 - x
        finite = np.isfinite(x)
        acc += np.where(finite, abs(w) * x, 0.0)
        known += np.where(finite, abs(w), 0.0)
    fraction = known / total
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(
            fraction >= params.min_weight_fraction, acc / np.where(known > 0, known, 1.0), np.nan
        )
    return score, fraction


def compute_lsi(
    factors: Mapping[str, np.ndarray], p_mm_h: float, d_h: float, params: LsiParams | None = None
) -> LsiResult:
    """Eq. 4 (as interpreted in the module docstring) for every pixel of the factor rasters."""
    params = params or LsiParams()
    score, fraction = static_score(factors, params)
    rm = rainfall_multiplier(p_mm_h, d_h, params)
    z = params.gain * (rm * score - params.centre)
    with np.errstate(invalid="ignore", over="ignore"):
        lsi = 1.0 / (1.0 + np.exp(-z))
    nan_mask = ~np.isfinite(lsi)
    partial = np.isfinite(lsi) & (fraction < 1.0 - 1e-12)
    return LsiResult(
        lsi=lsi.astype(np.float32),
        static_score=score.astype(np.float32),
        rainfall_multiplier=rm,
        nan_pixels=int(nan_mask.sum()),
        partial_pixels=int(partial.sum()),
    )
