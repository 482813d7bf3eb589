"""Feature windows: the last steps in the store -> SiteSeries -> the model input a bundle declares.

The features themselves are built by ``agent.features.displacement`` (the same pure functions as in
training), so the gateway and the training run cannot disagree on a feature's definition. This module
only chooses the steps, converts them to a :class:`SiteSeries` and judges whether there is enough data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.errors import BundleSchemaError, FeatureWindowError
from agent.features.aggregate import DAY_S, SITE_SERIES_COLUMNS, StepTable
from agent.features.displacement import FEATURES, RAIN_SUM_STEPS, check_meta, latest_window
from agent.features.site_series import SiteSeries
from agent.features.store import Store

# Which step column's completeness stands for each feature's input, as data (first matching prefix).
FEATURE_SOURCES: tuple[tuple[str, str], ...] = (
    ("velocity_up", "disp_u_mm"),
    ("velocity", "disp_e_mm"),
    ("rain", "rain_mm"),
    ("log1p_pgv", "pgv_mm_s"),
    ("seismic_events", "pgv_mm_s"),
    ("groundwater", "groundwater_m"),
)
STEP_NAMES: dict[int, str] = {DAY_S: "P1D", 3600: "PT1H"}


@dataclass(frozen=True)
class FeatureWindow:
    """One model input and how much real data it rests on."""

    x: np.ndarray  # (1, F, W) float32, normalised, in manifest feature order
    completeness: float  # mean over the W steps of the least complete input the features use
    finite_fraction: float  # the builder's: fraction of the window with a finite first feature
    step_completeness: np.ndarray  # (W,) per-step completeness used for ``completeness``
    last_step: float  # start time (UTC s) of the newest step in the window
    series: SiteSeries  # the steps read (window plus look-back for antecedent sums)


def feature_sources(feature_names: Sequence[str]) -> list[str]:
    """Step columns whose completeness matters for these features; BundleSchemaError on unknown ones."""
    unknown = [f for f in feature_names if f not in FEATURES]
    if unknown:
        raise BundleSchemaError(
            f"bundle asks for features {unknown} that this agent does not know",
            fix=f"use a bundle built from features {sorted(FEATURES)}, or upgrade the agent",
        )
    cols: list[str] = []
    for name in feature_names:
        col = next((c for prefix, c in FEATURE_SOURCES if name.startswith(prefix)), None)
        if col is not None and col not in cols:
            cols.append(col)
    return cols


def site_series(
    table: StepTable, *, station: str = "gateway", extra_meta: Mapping[str, str] | None = None
) -> SiteSeries:
    """Steps -> SiteSeries with the site-series columns and a per-step ``completeness`` column.

    ``completeness`` = min(GNSS, rain) completeness of the step (the two inputs every model uses).
    """
    columns = {c: table.values[c].astype(np.float64) for c in SITE_SERIES_COLUMNS}
    columns["completeness"] = np.minimum(table.completeness["disp_e_mm"], table.completeness["rain_mm"])
    meta = {
        "station": station,
        "step": STEP_NAMES.get(table.step_s, f"PT{table.step_s}S"),
        "source": "gateway",
    }
    meta.update(dict(extra_meta or {}))
    return SiteSeries(times=table.times.copy(), columns=columns, meta=meta)


def lookback_steps(meta: Mapping[str, Any]) -> int:
    """Steps to read for one window: the window, the longest antecedent sum and one for velocities."""
    return int(meta["window"]) + max(RAIN_SUM_STEPS) + 1


def feature_window(
    store: Store,
    meta: Mapping[str, Any],
    *,
    end: float,
    step_s: int = DAY_S,
    min_completeness: float = 0.5,
) -> FeatureWindow:
    """The model input for the closed steps before ``end`` (a step still running is not used).

    Raises BundleSchemaError when the manifest names a feature this agent does not know, and
    FeatureWindowError (with ``completeness``) when less than ``min_completeness`` of the window's
    inputs were delivered by the sensors.
    """
    check_meta(meta)
    sources = feature_sources(meta["feature_names"])
    window = int(meta["window"])
    table = store.last_steps(step_s, lookback_steps(meta), end)
    series = site_series(table)
    x, finite = latest_window(series, meta)
    comp_cols = [table.completeness[c][-window:] for c in sources if c in table.completeness]
    # Inputs the gateway does not measure (groundwater) have no column here and do not count;
    # a window with no measured input at all has completeness 0.
    step_comp = np.min(np.vstack(comp_cols), axis=0) if comp_cols else np.zeros(window)
    completeness = float(np.mean(step_comp)) if step_comp.size else 0.0
    if completeness < min_completeness:
        raise FeatureWindowError(
            f"feature window of {window} steps of {step_s} s before t={end:.0f} is only "
            f"{completeness:.0%} complete (inputs {sources}); at least {min_completeness:.0%} is needed",
            fix="check the sensors' counters (`agent inspect`, the pipeline counters); the forecast "
            "source reports 'no data' until the store holds enough steps",
            completeness=completeness,
        )
    return FeatureWindow(
        x=x,
        completeness=completeness,
        finite_fraction=finite,
        step_completeness=step_comp,
        last_step=float(table.times[-1]),
        series=series,
    )
