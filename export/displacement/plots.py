"""PNG plots a person would look at: per station, observed vs predicted next-step displacement with the
conformal interval, the warning threshold, and the rain of each step."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from export.displacement.dataset import Part

SHOWN = ("multitask", "persistence", "gbr", "source_only", "scratch")


def break_gaps(t: np.ndarray, *series: np.ndarray) -> list[np.ndarray]:
    """Insert NaN where consecutive times are more than 1.5 typical steps apart, so lines break at gaps."""
    if t.size < 2:
        return [t, *series]
    dt = np.diff(t)
    cut = np.nonzero(dt > 1.5 * np.median(dt))[0] + 1
    return [np.insert(np.asarray(a, dtype=np.float64), cut, np.nan) for a in (t, *series)]


def plot_test(
    run_dir: Path,
    run: Mapping[str, Any],
    test: Part,
    preds: Mapping[str, np.ndarray],
    halves: Mapping[str, float | None],
    threshold: float,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    out = []
    synthetic = " (SYNTHETIC data)" if run["meta"].get("synthetic") else ""
    for i, station in enumerate(run["stations"]):
        sel = test.station == i
        if not sel.any():
            continue
        t = (test.t[sel] / 86400.0).astype("float64")  # days since epoch = matplotlib date numbers
        fig, (ax, axr) = plt.subplots(
            2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True
        )
        ax.plot(*break_gaps(t, test.y[sel]), "k.-", lw=0.8, ms=3, label="observed")
        half = halves.get("multitask")
        if "multitask" in preds and half is not None and np.isfinite(half):
            p = preds["multitask"][sel]
            nominal = float(run["meta"]["conformal_nominal"])
            tb, lo, hi = break_gaps(t, p - half, p + half)
            ax.fill_between(tb, lo, hi, color="tab:blue", alpha=0.2, label=f"{nominal:.0%} interval")
        for name in SHOWN:
            if name in preds:
                ax.plot(*break_gaps(t, preds[name][sel]), lw=1.2 if name == "multitask" else 0.8, label=name)
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:.2f} mm")
        ax.set_ylabel("next-step displacement (mm)")
        ax.set_title(f"{station}: test part, observed vs predicted{synthetic}")
        ax.legend(fontsize=7, ncol=4)
        axr.bar(t, np.nan_to_num(test.rain[sel]), width=0.8, color="tab:cyan")
        axr.set_ylabel("rain (mm/step)")
        axr.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        path = Path(run_dir) / f"plot_{station}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out
