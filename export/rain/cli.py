"""Commands: `agent-export data import rain-catalogue`, `calibrate rain` and `report rain`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent.errors import LewsError
from export.groups import Groups

log = logging.getLogger(__name__)


def _fail(exc: LewsError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


def import_rain_catalogue(
    rain: Annotated[
        Path,
        typer.Option("--rain", help="Rain record: long CSV time,mm; NOAA GHCN-Daily; wide day-by-month."),
    ],
    landslides: Annotated[
        Path, typer.Option("--landslides", help="CSV with a `date` column, one row per landslide.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Day table to write (CSV).")],
    layout: Annotated[str, typer.Option(help="auto | long | noaa | wide")] = "auto",
    noaa_units: Annotated[str, typer.Option(help="PRCP units of a NOAA export: in | mm")] = "in",
    time_label: Annotated[
        str, typer.Option(help="Sub-daily time stamps mark the interval's end | start")
    ] = "end",
    day_offset_h: Annotated[float, typer.Option(help="A day starts this many hours after 00:00 UTC")] = 0.0,
    max_gap_days: Annotated[
        float, typer.Option(help="Refuse a record with a gap longer than this (days)")
    ] = 2.0,
) -> None:
    """Rain record + landslide list -> one row per day with the landslide flag and rolling predictors."""
    from export.rain.landslides import read_landslides
    from export.rain.series import read_rain
    from export.rain.table import build_table, write_table

    if time_label not in ("end", "start"):
        _fail(LewsError(f"--time-label {time_label!r}", fix="use end or start"))
    try:
        series = read_rain(rain, layout, noaa_units, time_label)
        table = build_table(series, read_landslides(landslides), str(landslides), day_offset_h, max_gap_days)
        write_table(table, out)
    except LewsError as exc:
        _fail(exc)
    m = table.meta
    for note in m["notes"]:  # type: ignore[attr-defined]
        typer.echo(f"{rain}: {note}", err=True)
    for g in m["gaps"]:  # type: ignore[attr-defined]
        typer.echo(
            f"{rain}: gap of {g['steps']} step(s) from {g['from']} (before {g['before']}), left out", err=True
        )
    typer.echo(
        f"{out}: {m['days']} days {m['first_day']}..{m['last_day']} ({m['step']}), "
        f"{m['usable_days']} usable, "
        f"{m['landslide_days_usable']} landslide days usable of {m['landslide_days']} "
        f"({m['landslides_total']} landslides; {m['landslides_outside_record']} outside the record)",
        err=True,
    )
    typer.echo(json.dumps({"table": str(out), **m}))


def calibrate_rain(
    table: Annotated[Path, typer.Argument(help="Day table from `data import rain-catalogue`.")],
    out: Annotated[Path, typer.Option("--out", help="thresholds.toml to write (the site's rule section).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on the last line.")
    ] = False,
    site: Annotated[str, typer.Option(help="Site name of the [warning.sites.NAME] section")] = "site",
    advisory_far: Annotated[float, typer.Option(help="Target false-alarm days/yr for advisory")] = 3.0,
    watch_far: Annotated[float, typer.Option(help="Target false-alarm days/yr for watch")] = 1.0,
    warning_far: Annotated[float, typer.Option(help="Target false-alarm days/yr for warning")] = 0.3,
    pairs: Annotated[bool, typer.Option(help="Also fit a logistic model for each pair of predictors")] = True,
    event_gap_days: Annotated[
        int, typer.Option(help="Landslide days at most this far apart are one event")
    ] = 2,
    train_fraction: Annotated[float, typer.Option(help="Chronological split: first part for fitting")] = 0.7,
    hold_after_rain_s: Annotated[
        float, typer.Option(help="Hold a level this long after the rain falls below")
    ] = 21600.0,
    summary_out: Annotated[Path | None, typer.Option(help="Also write the full summary JSON here")] = None,
    predictors: Annotated[str, typer.Option(help="Comma-separated predictors to try (default: all)")] = "",
) -> None:
    """Fit thresholds and logistic models, choose levels 1-3 by false-alarm rate, validate (LOEO)."""
    from export.rain.calibrate import LEVELS
    from export.rain.run import calibrate, thresholds_toml

    targets = {"advisory": advisory_far, "watch": watch_far, "warning": warning_far}
    try:
        summary, choice = calibrate(
            table,
            targets,
            pairs=pairs,
            gap_days=event_gap_days,
            train_fraction=train_fraction,
            predictors=[p.strip() for p in predictors.split(",") if p.strip()] or None,
        )
        day_offset = float(summary.get("day_offset_h") or 0.0)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            thresholds_toml(summary, choice, site, hold_after_rain_s, day_offset), encoding="utf-8"
        )
    except LewsError as exc:
        _fail(exc)
    if summary_out is not None:
        summary_out.write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    for lv in LEVELS:
        f = summary["levels"][lv]
        thr = "off" if f["threshold"] is None else f"{f['threshold']:.4g} {f['unit']}"
        typer.echo(
            f"{lv:8s} {f['predictor']:32s} >= {thr:16s} LOEO POD {f['pod']:.2f} "
            f"[{f['pod_ci95'][0]:.2f}-{f['pod_ci95'][1]:.2f}] ({f['caught']}/{f['events']}), "
            f"false alarms {f['false_alarm_days_per_year']:.2f} d/yr, "
            f"warning days {f['warning_days_per_year']:.2f}/yr",
            err=True,
        )
    idc = summary["default_id_curve"]
    typer.echo(
        f"default ID curve: advisory {idc['advisory']['warning_days_per_year']:.1f} d/yr (POD "
        f"{idc['advisory']['pod']:.2f}), watch {idc['watch']['warning_days_per_year']:.1f} d/yr "
        f"(POD {idc['watch']['pod']:.2f})",
        err=True,
    )
    for c in summary["caveats"]:
        typer.echo(f"note: {c}", err=True)
    typer.echo(f"wrote {out}", err=True)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=float) + "\n")


def report_rain(
    table: Annotated[Path, typer.Argument(help="Day table.")],
    summary: Annotated[
        Path, typer.Option("--summary", help="Summary JSON from calibrate rain --summary-out.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG figures.")],
) -> None:
    """Figures for docs/rain-thresholds.md: threshold vs false alarms vs POD; rain with warning days."""
    from export.rain.report import make_figures

    try:
        for p in make_figures(table, json.loads(summary.read_text(encoding="utf-8")), out):
            typer.echo(str(p))
    except LewsError as exc:
        _fail(exc)


def register(groups: Groups) -> None:
    groups.data_import.command("rain-catalogue")(import_rain_catalogue)
    calibrate = typer.Typer(
        name="calibrate",
        help="Calibrate warning thresholds on a site's record.",
        no_args_is_help=True,
        add_completion=False,
    )
    calibrate.command("rain")(calibrate_rain)
    groups.app.add_typer(calibrate)
    report = typer.Typer(
        name="report", help="Figures for the evaluation pages.", no_args_is_help=True, add_completion=False
    )
    report.command("rain")(report_rain)
    groups.app.add_typer(report)
