"""PNG plots a person would look at, per station of the test part:

1. forecast vs observed cumulative displacement at the longest horizon, the chosen model with its
   distribution interval, and the moving average;
2. the K-step velocity with the alarm rate V, the warning episodes shaded and the warning days of the
   chosen model and of the velocity-threshold rule marked;
3. rain per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.features import forecast_dist as fdist
from agent.features.site_series import step_seconds
from export.displacement.dataset import Part
from export.displacement.scoring import episodes


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
    warns: Mapping[str, np.ndarray],
    timeline: Mapping[str, np.ndarray],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    meta = run["meta"]
    hs = fdist.horizons_of(meta)
    i_h, h = len(hs) - 1, hs[-1]
    step_s = float(step_seconds(str(meta["step"])) or 86400.0)
    chosen = str(run.get("export_model", "multitask"))
    q = run.get("residual_quantiles", {}).get(chosen)
    nominal = float(meta["conformal_nominal"])
    synthetic = " (SYNTHETIC data)" if meta.get("synthetic") else ""
    out = []
    for i, station in enumerate(run["stations"]):
        sel = test.station == i
        if not sel.any():
            continue
        t = ((test.t[sel] - step_s) / 86400.0).astype("float64")  # origin, in matplotlib date numbers
        fig, (ax, axv, axr) = plt.subplots(
            3,
            1,
            figsize=(11, 8),
            sharex=True,
            gridspec_kw={"height_ratios": [3, 2, 1]},
            constrained_layout=True,
        )
        ax.plot(
            *break_gaps(t, test.y[sel, i_h]), "k.-", lw=0.8, ms=3, label=f"observed {h}-step displacement"
        )
        if chosen in preds:
            p = preds[chosen][sel, i_h]
            if q is not None:
                lo, hi = fdist.interval(p, fdist.window_scale(test.x[sel], meta), q[str(h)], nominal)
                tb, lo_b, hi_b = break_gaps(t, lo, hi)
                ax.fill_between(tb, lo_b, hi_b, color="tab:blue", alpha=0.2, label=f"{nominal:.0%} interval")
            ax.plot(*break_gaps(t, p), color="tab:blue", lw=1.2, label=f"{chosen} (chosen)")
        if "moving_average" in preds and chosen != "moving_average":
            ax.plot(
                *break_gaps(t, preds["moving_average"][sel, i_h]),
                color="tab:orange",
                lw=0.8,
                label="moving_average",
            )
        ax.set_ylabel(f"displacement over {h} steps (mm)")
        ax.set_title(f"{station}: test part, forecast at the {h}-step horizon vs observed{synthetic}")
        ax.legend(fontsize=7, ncol=4)
        w = meta["station_warnings"].get(station, meta["warning"])
        if "tl_t" in timeline:
            on = timeline["tl_station"] == i
            tt = timeline["tl_t"][on]
            span = (tt >= test.t[sel].min() - step_s) & (tt <= test.t[sel].max())
            ev = timeline["tl_event"][on].astype(bool)
            for a, b in episodes(ev, int(w["k_steps"])):
                if span[a] or span[b]:
                    axv.axvspan(tt[a] / 86400.0, tt[b] / 86400.0 + 1, color="tab:red", alpha=0.2)
        vk = test.y[sel, 0] * np.nan
        k = int(w["k_steps"])
        if k in hs:
            vk = test.y[sel, hs.index(k)] / k  # velocity over the k steps after the origin
            axv.plot(*break_gaps(t + k, vk), "k-", lw=0.8, label=f"{k}-step velocity")
        axv.axhline(float(w["velocity_mm_per_step"]), color="tab:red", ls="--", lw=1, label="alarm rate V")
        top = float(np.nanmax(vk)) if np.isfinite(vk).any() else float(w["velocity_mm_per_step"])
        for j, (name, marker) in enumerate(((chosen, "v"), ("velocity_threshold", "x"))):
            if name in warns:
                days = t[warns[name][sel]]
                axv.plot(
                    days,
                    np.full(days.size, top * (1.05 + 0.08 * j)),
                    marker,
                    ms=4,
                    ls="",
                    label=f"warning: {name}",
                )
        axv.set_ylabel("mm/step")
        axv.legend(fontsize=7, ncol=4)
        axr.bar(t + 1, np.nan_to_num(test.rain[sel]), width=0.8, color="tab:cyan")
        axr.set_ylabel("rain (mm/step)")
        axr.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
        path = Path(run_dir) / f"plot_{station}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        out.append(path)
    return out
