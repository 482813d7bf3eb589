"""`agent-export calibrate rain`: fit, choose, validate, and write the site's rule section (TOML)."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.errors import RainCatalogueError
from export.rain.calibrate import LEVELS, LevelChoice, candidates, choose_levels, event_groups, fit
from export.rain.table import DayTable, read_table
from export.rain.validate import (
    MIN_EVENTS_FOR_SKILL,
    chronological,
    clopper_pearson,
    id_curve,
    in_sample,
    loeo,
    predictor_auc,
)

log = logging.getLogger(__name__)


def calibrate(
    table_path: Path,
    targets: dict[str, float],
    *,
    pairs: bool = True,
    gap_days: int = 2,
    train_fraction: float = 0.7,
    predictors: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, LevelChoice]]:
    """The calibration summary (the JSON the CLI prints) and the chosen level rules (fitted on all days)."""
    full = read_table(table_path)
    table = full.subset(full.usable)
    if table.days.size == 0:
        raise RainCatalogueError(f"{table_path}: no usable day", fix="re-import a record without gaps")
    groups = event_groups(table, gap_days)
    if not groups:
        raise RainCatalogueError(
            f"{table_path}: no landslide day among the usable days", fix="check the list"
        )
    for lv in LEVELS:
        if not targets[lv] > 0:
            raise RainCatalogueError(f"target false alarms for {lv} must be > 0", fix="e.g. --advisory-far 3")
    names = table.names
    if predictors:
        unknown = [p for p in predictors if p not in names]
        if unknown:
            raise RainCatalogueError(
                f"{table_path}: no predictor {unknown} in the table", fix=f"choose from {names}"
            )
        names = predictors
    cands = candidates(names, pairs=pairs)
    models = [fit(c, table) for c in cands]
    choice = choose_levels(table, models, targets, groups)
    log.info("leave-one-event-out over %d events x %d candidates", len(groups), len(cands))
    validated = loeo(table, cands, targets, groups, gap_days)
    chrono = chronological(table, cands, targets, gap_days, train_fraction)
    fitted = in_sample(choice, table, groups)
    levels: dict[str, Any] = {}
    for lv in LEVELS:
        ch = choice[lv]
        levels[lv] = {
            "predictor": ch.model.candidate.name,
            "kind": ch.model.candidate.kind,
            "threshold": ch.threshold,
            "unit": "mm" if ch.model.candidate.kind == "total" else "probability",
            "target_false_alarm_days_per_year": targets[lv],
            **validated[lv],
            "in_sample": fitted[lv],
            "chronological": chrono.get(lv),
        }
    n = len(groups)
    caveats = [
        f"{n} events (landslide days grouped into storms when at most {gap_days} days apart) over "
        f"{table.years():.1f} years of usable days; {int(table.event.sum())} landslide days.",
        "False-alarm days count every day at or above the level without a landslide in the list; an "
        "unreported landslide makes a true alarm look false.",
        "Thresholds are set in sample to the target false-alarm rate; the LOEO POD is out of sample for the "
        "events, the chronological split is out of sample for both events and false alarms.",
    ]
    if n < MIN_EVENTS_FOR_SKILL:
        caveats.insert(0, f"Only {n} events: too few to claim skill; the intervals show how little is known.")
    if full.meta.get("step") == "daily":
        caveats.append(
            "Daily record only: no N-hour predictor could be tested (the Sitka study's best was 3 h)."
        )
    summary: dict[str, Any] = {
        "table": str(table_path),
        "rain": full.meta.get("rain"),
        "step": full.meta.get("step"),
        "day_offset_h": float(full.meta.get("day_offset_h", 0.0) or 0.0),  # type: ignore[arg-type]
        "events": n,
        "event_days": int(table.event.sum()),
        "years": table.years(),
        "usable_days": int(table.days.size),
        "targets_false_alarm_days_per_year": targets,
        "validation": "leave-one-event-out",
        "levels": levels,
        "predictors": predictor_auc(table, models),
        "chronological": {k: v for k, v in chrono.items() if k not in LEVELS},
        "default_id_curve": id_curve(table),
        "caveats": caveats,
    }
    summary["same_false_alarms_as_default"] = _at_default_rate(
        table, models, summary["default_id_curve"], groups
    )
    return summary, choice


def _at_default_rate(
    table: DayTable, models: list[Any], idc: dict[str, Any], groups: list[Any]
) -> dict[str, Any]:
    """In sample: the best single predictor's POD when allowed as many false-alarm days as the default ID
    curve raises (is the default's POD bought only with its false alarms?)."""
    from export.rain.calibrate import caught, threshold_for

    out: dict[str, Any] = {}
    for lv in ("advisory", "watch"):
        rate = float(idc[lv]["false_alarm_days_per_year"])
        best: dict[str, Any] = {}
        for m in models:
            if m.candidate.kind != "total":
                continue
            s = m.score(table)
            thr = threshold_for(s[~table.event], table.years(), rate)
            pod = float(caught(s, thr, groups).mean())
            if not best or pod > best["pod"]:
                best = {
                    "predictor": m.candidate.name,
                    "threshold": thr,
                    "pod": pod,
                    "false_alarm_days_per_year": rate,
                }
        out[lv] = best
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(v)) if math.isfinite(v) else '"nan"'
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def thresholds_toml(
    summary: dict[str, Any], choice: dict[str, LevelChoice], site: str, hold_s: float, day_offset_h: float
) -> str:
    """The ``[warning.sites.SITE.rainfall.calibrated]`` section: append it to agent.toml as it is."""
    base = f"warning.sites.{_key(site)}.rainfall.calibrated"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")  # noqa: UP017 (3.10)
    lines = [
        f"# Rain thresholds for site {site!r}, calibrated {stamp} by",
        f"# `agent-export calibrate rain {summary['table']}` on {summary['rain']} ({summary['step']}):",
        f"# {summary['events']} events over {summary['years']:.1f} years.",
        "# Validation figures are leave-one-event-out (see docs/rain-thresholds.md). Append to agent.toml.",
        f"[{base}]",
        f"source = {_toml_value(str(summary['table']))}",
        f"hold_after_rain_s = {float(hold_s)!r}",
        f"day_offset_h = {float(day_offset_h)!r}",
        f"events = {int(summary['events'])}",
        f"years = {round(float(summary['years']), 2)!r}",
        "",
    ]
    for lv in LEVELS:
        ch, fig = choice[lv], summary["levels"][lv]
        if ch.threshold is None:
            lines += [
                f"# {lv}: no threshold meets {ch.target:g} false-alarm days/yr; the level stays off",
                "",
            ]
            continue
        lo, hi = clopper_pearson(int(fig["caught"]), int(fig["events"]))
        validation = {
            "method": "leave-one-event-out",
            "pod": round(fig["pod"], 4),
            "pod_ci95": [round(lo, 4), round(hi, 4)],
            "caught": int(fig["caught"]),
            "events": int(fig["events"]),
            "false_alarm_days_per_year": round(fig["false_alarm_days_per_year"], 3),
            "warning_days_per_year": round(fig["warning_days_per_year"], 3),
            "target_false_alarm_days_per_year": ch.target,
        }
        lines += [
            f"[{base}.{lv}]",
            f"kind = {_toml_value(ch.model.candidate.kind)}",
            f"predictor = {_toml_value(ch.model.candidate.name)}",
            f"threshold = {float(ch.threshold)!r}",
            f"intercept = {ch.model.intercept!r}",
            f"coef = {_toml_value(ch.model.coef)}",
            f"validation = {_toml_value(validation)}",
            "",
        ]
    return "\n".join(lines)
