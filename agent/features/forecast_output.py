"""The interpreted displacement forecast: model outputs + manifest meta -> :class:`Forecast`.

Multi-horizon bundles (``meta["residual_quantiles"]``): per horizon the cumulative displacement, its
interval and exceedance probabilities from the predictive distribution of
:mod:`agent.features.forecast_dist` (always consistent with each other), and the warning target's
probability (the multi-task CNN's auxiliary head, or the distribution). Older one-horizon bundles keep
their split-conformal interval and exceedance head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import BundleSchemaError
from agent.features import forecast_dist as fdist
from agent.features.displacement import OUTPUT_NAMES, check_meta


@dataclass(frozen=True)
class HorizonForecast:
    """The forecast of one horizon: cumulative displacement over ``steps`` steps and its distribution."""

    steps: int
    displacement_mm: float
    interval_mm: tuple[float, float]
    exceedance: tuple[tuple[float, float], ...]  # (threshold mm, P(displacement > threshold))


@dataclass(frozen=True)
class WarningForecast:
    """P(the K-step velocity exceeds the alarm rate V within ``horizon_steps``) and the decision."""

    velocity_mm_per_step: float
    k_steps: int
    horizon_steps: int
    probability: float
    cutoff: float
    raised: bool
    source: str  # "head" (multi-task CNN's auxiliary output) or "distribution"


@dataclass(frozen=True)
class Forecast:
    """The interpreted model output. The scalar fields are those of the warning horizon (the longest
    horizon not beyond the warning target's; an older one-horizon bundle: its only horizon)."""

    displacement_mm: float  # cumulative displacement over the warning horizon, along the motion
    interval_mm: tuple[float, float]  # its interval (distribution or split conformal)
    interval_nominal: float  # its nominal coverage, e.g. 0.9
    exceed_prob: dict[float, float]  # threshold (mm) -> P(displacement > threshold) at that horizon
    threshold_mm: float  # the primary warning threshold of the training run
    exceeds_threshold: bool  # displacement_mm > threshold_mm
    completeness: float  # fraction of the input window that had data
    # older bundles: P(exceed primary threshold) >= meta["exceed_prob_cutoff"]; newer: warning.raised
    exceeds_by_probability: bool | None = None
    horizons: tuple[HorizonForecast, ...] = ()
    warning: WarningForecast | None = None
    model_variant: str = ""
    horizon_steps: int = 1


def _outputs(outputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        disp = np.asarray(outputs[OUTPUT_NAMES[0]], dtype=np.float64).reshape(-1)
    except KeyError as exc:
        raise BundleSchemaError(
            f"displacement model outputs lack {exc.args[0]!r}",
            fix=f"the model must output {OUTPUT_NAMES[0]!r} (and {OUTPUT_NAMES[1]!r} for a CNN)",
        ) from exc
    if not np.all(np.isfinite(disp)):
        raise BundleSchemaError(
            "model output displacement is not finite", fix="check the input window and model"
        )
    probs = outputs.get(OUTPUT_NAMES[1])
    return disp, None if probs is None else np.asarray(probs, dtype=np.float64).reshape(-1)


def interpret(
    outputs: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    completeness: float = 1.0,
    *,
    x: np.ndarray | None = None,
    thresholds_mm: Sequence[float] | None = None,
    per_step: bool = False,
    warning: Mapping[str, Any] | None = None,
) -> Forecast:
    """Turn one sample's model outputs into a :class:`Forecast` using the manifest meta.

    A bundle with ``residual_quantiles`` (multi-horizon) needs the input window ``x`` (1, F, W): the
    distribution is scaled by its local scale. Exceedance probabilities are computed for
    ``thresholds_mm`` (default the run's ``thresholds_mm``); with ``per_step`` they are rates (mm per
    step, the site's level thresholds) and horizon h uses ``rate * h`` mm. ``warning`` overrides the
    bundle's warning target (V, K) when its probability comes from the distribution.
    """
    check_meta(meta)
    disp, probs = _outputs(outputs)
    hs = fdist.horizons_of(meta)
    if disp.size != len(hs):
        raise BundleSchemaError(
            f"model gives {disp.size} displacements for horizons {hs}",
            fix="re-export the bundle so horizons_steps matches the regression head",
        )
    primary = float(meta["primary_threshold_mm"])
    nominal = float(meta["conformal_nominal"])
    if "residual_quantiles" not in meta:
        return _interpret_v1(disp, probs, meta, completeness)
    if x is None:
        raise BundleSchemaError("a multi-horizon bundle needs the input window", fix="pass x=window.x")
    thr = [float(t) for t in (thresholds_mm if thresholds_mm is not None else meta["thresholds_mm"])]
    scale = fdist.window_scale(x, meta)
    out = []
    for i, h in enumerate(hs):
        q = meta["residual_quantiles"][str(h)]
        lo, hi = fdist.interval(disp[i : i + 1], scale, q, nominal)
        thr_h = [t * h for t in thr] if per_step else thr
        p = [float(fdist.exceed_probability(disp[i : i + 1], scale, q, t)[0]) for t in thr_h]
        out.append(
            HorizonForecast(
                h, float(disp[i]), (float(lo[0]), float(hi[0])), tuple(zip(thr_h, p, strict=True))
            )
        )
    wset = dict(meta.get("warning") or {})
    source = str(meta.get("warning_source", "distribution"))
    if warning and source == "distribution":
        wset.update(warning)
    h_warn = int(wset.get("horizon_steps", hs[-1]))
    sel = [f for f in out if f.steps <= h_warn] or out[:1]
    main = sel[-1]
    wf = None
    if wset:
        if source == "head" and probs is not None:
            prob = float(max(probs[i] for i, h in enumerate(hs) if h <= h_warn))
        else:
            prob = float(fdist.warning_probability(disp[None, :], x, meta, wset)[0])
        cutoff = float(meta.get("exceed_prob_cutoff", 0.5))
        wf = WarningForecast(
            float(wset["velocity_mm_per_step"]),
            int(wset["k_steps"]),
            h_warn,
            prob,
            cutoff,
            prob >= cutoff,
            source,
        )
    return Forecast(
        displacement_mm=main.displacement_mm,
        interval_mm=main.interval_mm,
        interval_nominal=nominal,
        exceed_prob=dict(main.exceedance),
        threshold_mm=primary,
        exceeds_threshold=main.displacement_mm > primary,
        completeness=completeness,
        exceeds_by_probability=None if wf is None else wf.raised,
        horizons=tuple(out),
        warning=wf,
        model_variant=str(meta.get("model_variant", "")),
        horizon_steps=main.steps,
    )


def _interpret_v1(
    disp: np.ndarray, probs: np.ndarray | None, meta: Mapping[str, Any], completeness: float
) -> Forecast:
    """An older one-horizon bundle: symmetric split-conformal interval, exceedance head per threshold."""
    thresholds = [float(t) for t in meta["thresholds_mm"]]
    if probs is None or probs.size != len(thresholds):
        raise BundleSchemaError(
            f"model gives {0 if probs is None else probs.size} exceedance probabilities for "
            f"{len(thresholds)} thresholds",
            fix="re-export the bundle so thresholds_mm matches the classification head",
        )
    q = float(meta["conformal_half_width_mm"])
    primary = float(meta["primary_threshold_mm"])
    by_prob: bool | None = None
    if meta.get("exceed_prob_cutoff") is not None:
        j = int(np.argmin(np.abs(np.asarray(thresholds) - primary)))
        by_prob = bool(probs[j] >= float(meta["exceed_prob_cutoff"]))
    d = float(disp[0])
    exceed = {t: float(np.clip(p, 0.0, 1.0)) for t, p in zip(thresholds, probs, strict=True)}
    h = int(meta.get("horizon_steps", 1))
    return Forecast(
        displacement_mm=d,
        interval_mm=(d - q, d + q),
        interval_nominal=float(meta["conformal_nominal"]),
        exceed_prob=exceed,
        threshold_mm=primary,
        exceeds_threshold=d > primary,
        completeness=completeness,
        exceeds_by_probability=by_prob,
        horizons=(HorizonForecast(h, d, (d - q, d + q), tuple(exceed.items())),),
        model_variant=str(meta.get("model_variant", "")),
        horizon_steps=h,
    )
