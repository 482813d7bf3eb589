"""The report's figures as PNG bytes (matplotlib, Agg canvas, no pyplot: safe in server threads).

Each ``plot_*`` takes :class:`~agent.report.data.ReportData` and returns PNG bytes; a panel without
data says so in the figure instead of failing. ``render_all`` returns name -> PNG for every figure.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agent.features.aggregate import DAY_S
from agent.history import NO_DATA, LevelRecord
from agent.report.data import ReportData
from agent.report.style import LEVEL_STYLE, SOURCE_ORDER, THRESHOLD_STYLE

log = logging.getLogger(__name__)

DPI = 100


def _dt(t: np.ndarray | Sequence[float]) -> np.ndarray:
    return (np.asarray(t, dtype=np.float64) * 1000.0).astype("datetime64[ms]")


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _figure(rows: int = 1, height: float = 3.2) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(10, height * rows), layout="constrained")
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, list(axes)


def _frame(ax: Axes, data: ReportData, title: str) -> None:
    ax.set_title(title, loc="left", fontsize=11)
    ax.set_xlim(_dt([data.start])[0], _dt([data.end])[0])
    ax.grid(True, alpha=0.3)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555")


def _thresholds(ax: Axes, values: tuple[float | None, float | None, float | None], unit: str) -> None:
    for (name, colour), v in zip(THRESHOLD_STYLE, values, strict=True):
        if v is not None:
            ax.axhline(v, color=colour, ls="--", lw=1.2, label=f"{name} {v:g} {unit}")


def plot_displacement(data: ReportData) -> bytes:
    """Cumulative E/N/U displacement; daily horizontal displacement with the forecasts and thresholds."""
    fig, (ax1, ax2) = _figure(2)
    title = f"GNSS displacement, {data.site}" if data.site else "GNSS displacement"
    _frame(ax1, data, title + " (daily medians, mm from the reference)")
    d = data.daily
    has = d is not None and any(np.isfinite(d.values[c]).any() for c in ("disp_e_mm", "disp_n_mm"))
    if d is not None and has:
        mid = _dt(d.times + d.step_s / 2)
        for col, label in (("disp_e_mm", "east"), ("disp_n_mm", "north"), ("disp_u_mm", "up")):
            ax1.plot(mid, d.values[col], marker=".", label=label)
        ax1.set_ylabel("mm")
        ax1.legend(loc="upper left", fontsize=8)
    else:
        _empty(ax1, "no GNSS displacement in this window")
    _frame(ax2, data, "Displacement per day: observed (horizontal) and day-ahead forecast")
    ax2.set_xlim(_dt([data.start])[0], _dt([data.end + DAY_S])[0])  # room for tomorrow's forecast
    if d is not None and has and len(d) > 1:
        step = np.hypot(np.diff(d.values["disp_e_mm"]), np.diff(d.values["disp_n_mm"]))
        ax2.bar(
            _dt(d.times[1:] + d.step_s / 2),
            step,
            width=np.timedelta64(int(d.step_s * 700), "ms"),
            color="#90a4ae",
            label="observed",
        )
    fc = data.history.forecasts
    if fc:
        x = _dt([f.valid_from + f.horizon_s / 2 for f in fc])
        y = np.array([f.value_mm for f in fc])
        err = np.array([[f.value_mm - f.lo_mm for f in fc], [f.hi_mm - f.value_mm for f in fc]])
        ax2.errorbar(
            x,
            y,
            yerr=np.clip(err, 0, None),
            fmt="o",
            color="#1565c0",
            ms=4,
            capsize=2,
            label="forecast (interval)",
        )
    _thresholds(ax2, data.warning.forecast.displacement_mm.as_tuple(), "mm")
    if not fc and not (d is not None and has):
        _empty(ax2, "no forecasts recorded in this window")
    ax2.set_ylabel("mm / day")
    ax2.legend(loc="upper left", fontsize=8)
    return _png(fig)


def plot_rain(data: ReportData) -> bytes:
    """Rain per hour (windows up to 7 days) or per day, with the cumulative sum."""
    fig, (ax,) = _figure(1)
    table = data.hourly if data.days <= 7 and data.hourly is not None else data.daily
    label = "hour" if table is data.hourly else "day"
    _frame(ax, data, f"Rain per {label} (mm) and cumulative")
    if table is None or not np.isfinite(table.values["rain_mm"]).any():
        _empty(ax, "no rain-gauge data in this window")
        return _png(fig)
    rain = np.nan_to_num(table.values["rain_mm"], nan=0.0)
    x = _dt(table.times + table.step_s / 2)
    ax.bar(x, rain, width=np.timedelta64(int(table.step_s * 900), "ms"), color="#1e88e5", label=f"mm/{label}")
    ax.set_ylabel(f"mm / {label}")
    twin = ax.twinx()
    twin.plot(x, np.cumsum(rain), color="#0d47a1", lw=1.5, label="cumulative")
    twin.set_ylabel("cumulative mm")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def plot_seismic(data: ReportData) -> bytes:
    """Peak ground velocity per window, STA/LTA trigger-ons and the PGV thresholds."""
    fig, (ax,) = _figure(1)
    _frame(ax, data, f"Seismic: PGV per window and triggers ({data.triggers.size} trigger-ons)")
    t, v = data.pgv
    if t.size == 0 and data.triggers.size == 0:
        _empty(ax, "no seismic data in this window")
        return _png(fig)
    if t.size:
        ax.plot(_dt(t), v, lw=0.8, color="#6a1b9a", label="PGV mm/s")
    for i, tt in enumerate(data.triggers.tolist()):
        ax.axvline(_dt([tt])[0], color="#d81b60", lw=0.8, alpha=0.7, label="trigger" if i == 0 else None)
    _thresholds(ax, data.warning.seismic.pgv_mm_s.as_tuple(), "mm/s")
    ax.set_ylabel("mm/s")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def level_lanes(records: Sequence[LevelRecord], end: float) -> dict[str, list[tuple[float, float, int]]]:
    """Lane name -> [(start, duration, level)] from level records (pure; 'published' first)."""
    lanes: dict[str, list[tuple[float, float, int]]] = {}
    names = ["published"] + [s for s in SOURCE_ORDER if any(s in r.sources for r in records)]
    names += sorted({s for r in records for s in r.sources} - set(names))
    for name in names:
        spans: list[tuple[float, float, int]] = []
        for i, rec in enumerate(records):
            lvl = rec.published if name == "published" else rec.sources.get(name)
            if lvl is None:
                continue
            nxt = records[i + 1].t if i + 1 < len(records) else end
            if spans and spans[-1][2] == lvl and math.isclose(spans[-1][0] + spans[-1][1], rec.t):
                s0, _, _ = spans[-1]
                spans[-1] = (s0, nxt - s0, lvl)
            else:
                spans.append((rec.t, max(nxt - rec.t, 0.0), lvl))
        if spans:
            lanes[name] = spans
    return lanes


def plot_levels(data: ReportData) -> bytes:
    """Published level and each source's level over time, one coloured lane each."""
    lanes = level_lanes(data.history.levels, data.end)
    fig, (ax,) = _figure(1, height=max(2.4, 0.45 * len(lanes) + 1.4))
    note = " (wire state only: no history.jsonl yet)" if data.levels_derived else ""
    _frame(ax, data, "Alert levels over time" + note)
    if not lanes:
        _empty(ax, "no levels recorded in this window")
        return _png(fig)
    names = list(lanes)
    min_w = (data.end - data.start) * 0.004  # a short span stays visible
    for row, name in enumerate(reversed(names)):
        for s, dur, lvl in lanes[name]:
            colour = LEVEL_STYLE.get(lvl, LEVEL_STYLE[NO_DATA])[1]
            dur = max(dur, min_w)
            s = min(s, data.end - dur)  # a span at the very end stays inside the axes
            ax.barh(
                row,
                np.timedelta64(int(dur * 1000), "ms"),
                left=_dt([s])[0],
                height=0.8 if name == "published" else 0.6,
                color=colour,
                edgecolor="none",
            )
    ax.set_yticks(range(len(names)), list(reversed(names)))
    handles = [
        ax.bar(0, 0, color=c, label=f"{k if k >= 0 else '-'} {n}")
        for k, (n, c) in sorted(LEVEL_STYLE.items())
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=8, ncol=5, bbox_to_anchor=(0, -0.12))
    return _png(fig)


def plot_riskmap(data: ReportData) -> bytes | None:
    """The latest landslide probability map, or None when there is none."""
    rm = data.riskmap
    if rm is None:
        return None
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(rm.probability, cmap="RdYlGn_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="landslide probability")
    when = "" if rm.t is None else f" at {np.datetime_as_string(_dt([rm.t])[0], unit='m')}Z"
    title = "Latest risk map" + when + (" (SYNTHETIC)" if rm.synthetic else "")
    if rm.threshold is not None:
        frac = float((rm.probability >= rm.threshold).mean())
        title += f"\n{frac:.1%} of the area >= {rm.threshold:g}"
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


PLOTS: dict[str, Callable[[ReportData], bytes | None]] = {
    "levels": plot_levels,
    "displacement": plot_displacement,
    "rain": plot_rain,
    "seismic": plot_seismic,
    "riskmap": plot_riskmap,
}


def render_all(data: ReportData) -> dict[str, bytes]:
    """Plot name -> PNG bytes (the risk map only when there is one)."""
    out: dict[str, bytes] = {}
    for name, fn in PLOTS.items():
        png = fn(data)
        if png is not None:
            out[name] = png
    return out
