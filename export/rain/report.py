"""Figures for docs/rain-thresholds.md (matplotlib, Agg): made by `agent-export report rain`.

1. ``rain-roc.png``: per single predictor, POD against false-alarm days per year as its threshold moves
   (in sample), the chosen levels (LOEO figures) and the default ID curve's two levels marked.
2. ``rain-series.png``: the daily rain series with the days at each calibrated level and the landslide days.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.errors import RainCatalogueError
from export.rain.calibrate import LEVELS, event_groups
from export.rain.table import read_table

COLOURS = {"advisory": "#e0b000", "watch": "#e07000", "warning": "#c00000"}


def _curve(
    score: np.ndarray, event: np.ndarray, groups: list[np.ndarray], years: float
) -> tuple[np.ndarray, np.ndarray]:
    """(false-alarm days/yr, POD) over thresholds at every non-event score."""
    from export.rain.calibrate import caught

    cuts = np.unique(np.quantile(score[~event], np.linspace(0.5, 1.0, 200)))
    fa = np.array([np.sum((score >= c) & ~event) / years for c in cuts])
    pod = np.array([caught(score, float(c), groups).mean() for c in cuts])
    return fa, pod


def make_figures(table_path: Path, summary: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = read_table(table_path)
    table = full.subset(full.usable)
    if table.days.size == 0:
        raise RainCatalogueError(f"{table_path}: no usable day", fix="re-import the table")
    out.mkdir(parents=True, exist_ok=True)
    groups = event_groups(table)
    years = table.years()
    paths: list[Path] = []

    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    singles = [n for n, p in summary["predictors"].items() if p["kind"] == "single"]
    best = sorted(singles, key=lambda n: -summary["predictors"][n]["auc"])[:5]
    for name in best:
        fa, pod = _curve(table.predictors[name], table.event, groups, years)
        ax.plot(fa, pod, lw=1.4, label=f"{name} (AUC {summary['predictors'][name]['auc']:.2f})")
    for lv in LEVELS:
        f = summary["levels"][lv]
        if f["threshold"] is None:
            continue
        lo, hi = f["pod_ci95"]
        ax.errorbar(
            [f["false_alarm_days_per_year"]],
            [f["pod"]],
            yerr=[[f["pod"] - lo], [hi - f["pod"]]],
            fmt="o",
            color=COLOURS[lv],
            capsize=3,
            label=f"{lv}: {f['predictor']} (LOEO, 95 % CI)",
        )
    idc = summary["default_id_curve"]
    for lv, mk in (("advisory", "s"), ("watch", "D")):
        ax.plot(
            [idc[lv]["false_alarm_days_per_year"]],
            [idc[lv]["pod"]],
            mk,
            color="k",
            mfc="none",
            label=f"default ID curve {lv} ({idc[lv]['multiple']:g}x)",
        )
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0, max(400.0, idc["advisory"]["false_alarm_days_per_year"] * 1.5))
    ax.set_ylim(0, 1)
    ax.set_xlabel("false-alarm days per year (days at or above the threshold without a landslide)")
    ax.set_ylabel(f"POD (share of {len(groups)} events caught)")
    ax.set_title(f"{Path(str(summary.get('rain') or table_path)).name}: threshold vs false alarms vs POD")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    paths.append(out / "rain-roc.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=110)
    dates = table.days.astype("datetime64[s]")
    ax.bar(dates, table.rain_mm, width=1.0, color="#4a78b5", label="daily rain (mm)")
    top = float(np.nanmax(table.rain_mm)) * 1.08
    for k, lv in enumerate(LEVELS):
        f = summary["levels"][lv]
        if f["threshold"] is None:
            continue
        name = f["predictor"]
        if f["kind"] == "total":
            score = table.predictors[name]
        else:
            coef = summary["predictors"][name]["coef"]
            z = summary["predictors"][name]["intercept"] + sum(
                b * table.predictors[n] for n, b in coef.items()
            )
            score = 1.0 / (1.0 + np.exp(-z))
        on = score >= f["threshold"]
        ax.plot(
            dates[on],
            np.full(int(on.sum()), top * (1.0 + 0.04 * k)),
            "|",
            ms=9,
            color=COLOURS[lv],
            label=f"{lv} day ({on.sum()})",
        )
    ev = table.event
    ax.plot(
        dates[ev],
        np.full(int(ev.sum()), top * 1.16),
        "v",
        ms=4,
        color="k",
        label=f"landslide day ({ev.sum()})",
    )
    ax.set_ylabel("mm/day")
    ax.set_title("rain with the calibrated warning days (full-record thresholds) and the landslide days")
    ax.legend(fontsize=7, loc="upper left", ncol=5)
    ax.set_ylim(0, top * 1.25)
    fig.tight_layout()
    paths.append(out / "rain-series.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    paths.append(out / "rain-tables.md")
    paths[-1].write_text(tables_markdown(summary), encoding="utf-8")
    return paths


def tables_markdown(summary: dict[str, Any]) -> str:
    """The page's tables (levels, predictors, default curve), from a calibration summary."""

    def ci(f: dict[str, Any]) -> str:
        lo, hi = f.get("pod_ci95", [float("nan"), float("nan")])
        return f"{lo:.2f}-{hi:.2f}"

    ev, days, years = summary["events"], summary["event_days"], summary["years"]
    head = (
        "| level | target FA d/yr | predictor | threshold | LOEO POD (caught/events) | 95 % CI "
        "| LOEO false-alarm d/yr | LOEO warning d/yr | in-sample POD "
        "| chronological test POD (caught/events) | chrono FA d/yr |"
    )
    lines = [
        f"{ev} events ({days} landslide days), {years:.2f} years of usable days ({summary['usable_days']}).",
        "",
        head,
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in LEVELS:
        f = summary["levels"][lv]
        thr = "off" if f["threshold"] is None else f"{f['threshold']:.4g} {f['unit']}"
        c = f.get("chronological") or {}
        chrono = f"{c['pod']:.2f} ({c['caught']}/{c['events']}, {c['predictor']})" if "pod" in c else "-"
        chrono_fa = f"{c['false_alarm_days_per_year']:.2f}" if "pod" in c else "-"
        lines.append(
            f"| {lv} | {f['target_false_alarm_days_per_year']:g} | {f['predictor']} | {thr} | {f['pod']:.3f} "
            f"({f['caught']}/{f['events']}) | {ci(f)} | {f['false_alarm_days_per_year']:.2f} | "
            f"{f['warning_days_per_year']:.2f} | {f['in_sample']['pod']:.3f} | {chrono} | {chrono_fa} |"
        )
    idc = summary["default_id_curve"]
    lines += [
        "",
        f"Default ID curve ({idc['curve']}, {idc['durations']}):",
        "",
        "| level | multiple | POD (caught/events) | 95 % CI | false-alarm d/yr | warning d/yr |",
        "|---|---|---|---|---|---|",
    ]
    for lv in LEVELS:
        f = idc[lv]
        if f["multiple"] == "off":
            lines.append(f"| {lv} | off | - | - | 0 | 0 |")
            continue
        lines.append(
            f"| {lv} | {f['multiple']:g}x | {f['pod']:.3f} ({f['caught']}/{f['events']}) | {ci(f)} | "
            f"{f['false_alarm_days_per_year']:.1f} | {f['warning_days_per_year']:.1f} |"
        )
    same = summary.get("same_false_alarms_as_default", {})
    if same:
        lines += [
            "",
            "Best single predictor allowed the default's false-alarm days (in sample):",
            "",
            "| level | false-alarm d/yr | predictor | threshold mm | POD |",
            "|---|---|---|---|---|",
        ]
        for lv, f in same.items():
            lines.append(
                f"| {lv} | {f['false_alarm_days_per_year']:.1f} | {f['predictor']} | {f['threshold']:.4g} | "
                f"{f['pod']:.3f} |"
            )
    lines += ["", "| predictor | ROC AUC | kind |", "|---|---|---|"]
    ranked = sorted(summary["predictors"].items(), key=lambda kv: -kv[1]["auc"])
    singles = [kv for kv in ranked if kv[1]["kind"] == "single"]
    pairs = [kv for kv in ranked if kv[1]["kind"] != "single"][:5]
    for name, p in singles + pairs:
        lines.append(f"| {name} | {p['auc']:.3f} | {p['kind']} |")
    return "\n".join(lines) + "\n"
