"""agent-export commands of the displacement area: data import/synth, train, evaluate, finetune."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agent.errors import LewsError
from agent.features.site_series import parse_iso, write_site_series
from export.groups import Groups

err_console = Console(stderr=True)


def _fail(exc: LewsError) -> None:
    typer.echo(f"error: {exc.message}", err=True)
    if exc.fix:
        typer.echo(f"fix: {exc.fix}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as prog:

        def task(desc: str, total: int) -> Callable[[int], None]:
            tid = prog.add_task(desc, total=total)
            return lambda n: prog.advance(tid, n)

        yield task


def _report_import(series: Any, out: Path) -> None:
    write_site_series(series, out)
    typer.echo(
        f"wrote {out}: {series.station}, {len(series)} steps of {series.step}, "
        f"repairs {series.repairs or 'none'}"
    )


def import_pbo_cmd(
    gnss_csv: Path = typer.Argument(
        ..., help="UNAVCO/PBO daily position csv (Date, North/East/Vertical (mm), ...)"
    ),
    rain: Path = typer.Option(..., "--rain", help="NOAA GHCN-Daily export with DATE and PRCP"),
    out: Path = typer.Option(..., "--out", help="site-series CSV to write"),
    groundwater: Path | None = typer.Option(None, "--groundwater", help="pressure-logger csv with Depth(m)"),
    rain_units: str = typer.Option("in", "--rain-units", help="PRCP units of the rain file: in (GHCN) or mm"),
    max_std_mm: float = typer.Option(5.0, "--max-std-mm", help="epochs with N/E sigma above this become NaN"),
    site: str = typer.Option("salmon-falls", "--site", help="site name written to the metadata header"),
) -> None:
    """UNAVCO/PBO GNSS csv + NOAA GHCN daily rain (inches -> mm) -> site-series CSV (daily)."""
    from export.data.pbo import import_pbo

    try:
        s = import_pbo(
            gnss_csv,
            rain,
            groundwater_csv=groundwater,
            site=site,
            rain_units=rain_units,
            max_std_mm=max_std_mm,
        )
        _report_import(s, out)
    except LewsError as exc:
        _fail(exc)


def import_three_gorges_cmd(
    displacement_csv: Path = typer.Argument(..., help="derived/gps_monthly_cumulative_displacement.csv"),
    rain: Path = typer.Option(..., "--rain", help="derived/rain_daily.csv"),
    point: str = typer.Option(..., "--point", help="monitoring point, e.g. ZG93"),
    out: Path = typer.Option(..., "--out", help="site-series CSV to write"),
) -> None:
    """Three Gorges (Baishuihe/Bazimen) monthly GPS + daily rain -> monthly site-series CSV."""
    from export.data.three_gorges import import_three_gorges

    try:
        _report_import(import_three_gorges(displacement_csv, rain, point), out)
    except LewsError as exc:
        _fail(exc)


def import_lamosano_cmd(
    displacement_csv: Path = typer.Argument(..., help="H_lamo.csv (date, p5 cumulative mm)"),
    rain: Path = typer.Option(..., "--rain", help="rain_hourly.csv (dd/mm/YYYY HH:MM, mm/h)"),
    out: Path = typer.Option(..., "--out", help="site-series CSV to write"),
) -> None:
    """Lamosano P5 11-day displacement + hourly rain -> 11-day site-series CSV."""
    from export.data.lamosano import import_lamosano

    try:
        _report_import(import_lamosano(displacement_csv, rain), out)
    except LewsError as exc:
        _fail(exc)


def synth_series_cmd(
    out: Path = typer.Option(..., "--out", help="site-series CSV to write (labelled synthetic)"),
    days: int = typer.Option(730, "--days", min=30, help="number of daily steps"),
    seed: int = typer.Option(0, "--seed", help="random seed (same seed, same series)"),
    station: str = typer.Option("SYN1", "--station", help="station name"),
    drop: str = typer.Option(
        "",
        "--drop",
        help="comma-separated optional columns to leave out, as a gateway without that sensor would "
        "(e.g. groundwater_m,pgv_mm_s,seismic_events for GNSS + rain gauge only)",
    ),
) -> None:
    """A SYNTHETIC daily series: stochastic rain, groundwater, groundwater-driven creep, quakes, GNSS noise,
    gaps."""
    from agent.features.site_series import OPTIONAL_COLUMNS
    from export.data.synthetic import generate_series

    s = generate_series(days, seed, station=station)
    dropped = [c.strip() for c in drop.split(",") if c.strip()]
    bad = [c for c in dropped if c not in OPTIONAL_COLUMNS]
    if bad:
        raise typer.BadParameter(f"{bad} are not optional columns; choose from {OPTIONAL_COLUMNS}")
    for c in dropped:
        s.columns.pop(c, None)
    write_site_series(s, out)
    typer.echo(f"wrote {out}: SYNTHETIC {station}, {days} days, seed {seed}")


def train_displacement_cmd(
    site_csvs: list[Path] = typer.Argument(..., help="site-series CSVs (one per station)"),
    out: Path = typer.Option(..., "--out", help="RUN_DIR to write"),
    train_fraction: float = typer.Option(
        0.7, "--train-fraction", help="chronological training part per series"
    ),
    seed: int = typer.Option(0, "--seed", help="random seed (deterministic)"),
    epochs: int = typer.Option(120, "--epochs", min=1, help="CNN training epochs"),
    window: int = typer.Option(14, "--window", min=3, help="input window length in steps"),
    gbr_estimators: int = typer.Option(150, "--gbr-estimators", min=1, help="trees of the gradient boosting"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads"),
    test_from: str | None = typer.Option(
        None, "--test-from", help="split every station at this UTC date (YYYY-MM-DD) instead of by fraction"
    ),
    horizons: str = typer.Option("1,3,7", "--horizons", help="forecast horizons in steps, e.g. 1,3,7"),
    alarm_k: int = typer.Option(7, "--alarm-k", min=1, help="warning target: K of the K-step velocity"),
    alarm_velocity: float | None = typer.Option(
        None,
        "--alarm-velocity",
        help="warning target: alarm rate V (mm/step) for every station; default derived per station",
    ),
    export_model: str | None = typer.Option(
        None, "--export-model", help="bundle this model instead of the one the calibration rule chooses"
    ),
) -> None:
    """Train the multi-task CNN, a single-task CNN, gradient boosting, persistence and moving average on
    the chronological first part of each series; the calibration tail of that part sets the intervals."""
    import torch

    from export.displacement.pipeline import train_run

    torch.set_num_threads(threads)
    try:
        split_time = parse_iso(test_from) if test_from else None
        with _progress() as task:
            run = train_run(
                site_csvs,
                out,
                train_fraction=train_fraction,
                test_from=split_time,
                seed=seed,
                epochs=epochs,
                window=window,
                gbr_estimators=gbr_estimators,
                horizons=_horizons(horizons),
                alarm_k=alarm_k,
                alarm_velocity=alarm_velocity,
                export_model=export_model,
                task=task,
            )
    except LewsError as exc:
        _fail(exc)
        return
    typer.echo(
        f"wrote {out}: chosen model {run['export_model']}, horizons {run['meta']['horizons_steps']}, "
        f"windows {run['windows']}, features {run['meta']['feature_names']}, "
        f"{run['timings_s']['total']} s"
    )


def _horizons(text: str) -> list[int]:
    try:
        hs = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise typer.BadParameter(f"--horizons {text!r}: give whole steps, e.g. 1,3,7") from None
    if not hs or hs[0] < 1:
        raise typer.BadParameter(f"--horizons {text!r}: give positive whole steps, e.g. 1,3,7")
    return hs


def _f(v: Any, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _table(result: dict[str, Any]) -> Table:
    hs = [str(h) for h in result.get("horizons_steps", [1])]
    tab = Table(
        title=f"test part: {result['test_steps']} windows; "
        f"noise sigma {_f(result.get('noise_sigma_mm'))} mm; "
        f"episodes per split {result.get('episodes_per_split')}; chosen model {result.get('chosen_model')}"
    )
    tab.add_column("model")
    for h in hs:
        for c in ("MAE", "skill/MA", "cov"):
            tab.add_column(f"{c} h{h}", justify="right")
    for c in ("episodes", "caught", "FA days/yr", "F2"):
        tab.add_column(c, justify="right")
    for name, m in result["models"].items():
        hz = m.get("horizons", {})
        cells = []
        for h in hs:
            s = hz.get(h, {})
            cells += [
                _f(s.get("mae_mm")),
                _f(s.get("skill_vs_moving_average"), "+.3f"),
                _f(s.get("coverage"), ".2f"),
            ]
        w = m.get("warning", {})
        cells += [
            str(w.get("episodes", "-")),
            str(w.get("episodes_caught", "-")),
            _f(w.get("false_alarm_days_per_year"), ".1f"),
            _f(w.get("f2")) + ("" if w.get("headline") else " (<5 ep.)"),
        ]
        tab.add_row(name, *cells)
    return tab


def evaluate_displacement_cmd(
    run_dir: Path = typer.Argument(..., help="RUN_DIR from `train displacement` or `finetune`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
    threshold_mm: float | None = typer.Option(None, "--threshold-mm", help="override the warning threshold"),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="write plot_<station>.png into RUN_DIR"),
) -> None:
    """Every model of the run on its held-back part: MAE/RMSE, warning P/R/F1/F2, interval coverage;
    writes RUN_DIR/evaluation.json and PNG plots."""
    from export.displacement.evaluate import evaluate_run

    try:
        result = evaluate_run(run_dir, threshold_mm, make_plots=plots)
    except LewsError as exc:
        _fail(exc)
        return
    if as_json:
        typer.echo(json.dumps(result))
    else:
        Console(width=160).print(_table(result))


def finetune_cmd(
    run_dir: Path = typer.Argument(..., help="source RUN_DIR (pretrained on the source stations)"),
    target_csv: Path = typer.Argument(..., help="site-series CSV of the new station"),
    steps: int = typer.Option(..., "--steps", min=2, help="how many first steps of the target may be used"),
    out: Path = typer.Option(..., "--out", help="RUN_DIR2 to write"),
    seed: int = typer.Option(0, "--seed", help="random seed"),
    stage1_epochs: int = typer.Option(60, "--stage1-epochs", min=0, help="epochs with the extractor frozen"),
    stage2_epochs: int = typer.Option(60, "--stage2-epochs", min=0, help="epochs on all layers at low rate"),
) -> None:
    """Two-stage few-shot adaptation to a new station; RUN_DIR2 also holds `source_only` and `scratch`."""
    import torch

    from export.displacement.finetune import finetune_run

    torch.set_num_threads(1)
    try:
        with _progress() as task:
            run = finetune_run(
                run_dir,
                target_csv,
                steps,
                out,
                seed=seed,
                stage1_epochs=stage1_epochs,
                stage2_epochs=stage2_epochs,
                task=task,
            )
    except LewsError as exc:
        _fail(exc)
        return
    typer.echo(f"wrote {out}: windows {run['windows']}")


def register(groups: Groups) -> None:
    groups.data_import.command("pbo")(import_pbo_cmd)
    groups.data_import.command("three-gorges")(import_three_gorges_cmd)
    groups.data_import.command("lamosano")(import_lamosano_cmd)
    groups.data_synth.command("series")(synth_series_cmd)
    groups.train.command("displacement")(train_displacement_cmd)
    groups.evaluate.command("displacement")(evaluate_displacement_cmd)
    groups.app.command("finetune")(finetune_cmd)
