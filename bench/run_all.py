"""Run the benchmarks, each as its own process writing JSON, and write bench/REPORT.md + report.json.

    .venv/bin/python bench/run_all.py [--quick] [--json] [--skip NAME ...] [--out DIR]

No benchmark's text output is parsed: every one writes its figures with ``--json FILE``. The benches
run one after the other (they would compete for the CPU otherwise):

- ``memory``   bench_memory.py: RSS/PSS by import, onnxruntime session options;
- ``realtime`` bench_realtime.py: the daemon at real time with every sensor (seismic 100 Hz, GNSS
  10 Hz), the risk map and a CPU hog (one busy process per CPU) for 60 s: CPU, RSS, PSS, wire p50/p99;
- ``wire_path`` bench_wire_path.py: the wire message's publish leg, send-first vs outbox-first, in
  turns in one run under the hog;
- ``ingest``   bench_ingest.py: store ingest and ``agent replay`` x real time (10 Hz GNSS + 100 Hz
  seismic capture);
- ``unet``     bench_unet.py: INT8 U-Net vs the INT8 GEMM peak and torch eager FP32, 1 thread;
- ``bridge``, ``gnss``, ``publish``: the decoders and the outbox/MQTT path;
- ``inference`` bench_inference.py on tiny trained runs (minutes of training; not in ``--quick``).

``--quick`` shortens the captures and timing windows (the realtime window stays 60 s: the gateway's
condition) and leaves out ``inference``; it fits in 20 minutes on 2 busy cores. ``--json``: the last
stdout line is one JSON object with the headline groups ``daemon``, ``wire``, ``replay``, ``unet``,
each with the ``load`` (load average, CPUs, ``busy``) measured next to it; ``busy`` means other work
shared the machine and the figure is a lower bound.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlib import load

log = logging.getLogger("bench.run_all")
REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),  # noqa: UP017
        "cpu_model": model,
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_at_start": load(),
    }


def run_bench(name: str, args: list[str], tmp: Path, timeout_s: float) -> dict[str, Any]:
    """One benchmark process; its ``--json`` file is the result (None when it failed)."""
    out_file = tmp / f"{name}.json"
    t0 = time.monotonic()
    log.info("running %s", name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEWS_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-W", "ignore", *args, "--json", str(out_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env=env,
        )
        rc, tail = proc.returncode, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        rc, tail = -1, f"timed out after {timeout_s:.0f} s"
    meta = {"wall_s": round(time.monotonic() - t0, 1), "rc": rc}
    if rc == 0 and out_file.is_file():
        return {"run": meta, "result": json.loads(out_file.read_text())}
    log.error("%s failed (rc %s): %s", name, rc, tail)
    return {"run": meta, "result": None, "error_tail": tail}


def plan(quick: bool, work: Path) -> dict[str, tuple[list[str], float]]:
    q = quick
    steps: dict[str, tuple[list[str], float]] = {
        "memory": (["bench/bench_memory.py", "--batches", "3" if q else "10"], 600),
        "realtime": (["bench/bench_realtime.py", "--seconds", "60"], 420),
        "wire_path": (["bench/bench_wire_path.py", "--n", "60" if q else "200"], 600),
        "ingest": (
            [
                "bench/bench_ingest.py",
                "--seconds",
                "1800",  # the 30-minute capture, in both forms
                "--live-seconds",
                "0" if q else "20",
                "--store-samples",
                "50000" if q else "200000",
            ],
            900,
        ),
        "unet": (["bench/bench_unet.py", "--min-seconds", "1" if q else "4"], 900),
        "bridge": (
            ["bench/bench_bridge.py", "--seconds", "60" if q else "600", "--repeat", "1" if q else "3"],
            600,
        ),
        "gnss": (["bench/bench_gnss.py", "--seconds", "60" if q else "600"], 600),
        "publish": (["bench/bench_publish.py", "--dir", str(work)], 600),
    }
    if not q:
        steps["inference"] = (["bench/bench_inference_runs.py", "--work", str(work)], 3600)
    return steps


def _get(tree: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The groups the issue asks for, each with the load measured next to it."""
    rt = _get(res, "realtime", "result") or {}
    ing = _get(res, "ingest", "result") or {}
    un = _get(res, "unet", "result") or {}
    mem = _get(res, "memory", "result") or {}
    wp = _get(res, "wire_path", "result") or {}
    exported = _get(un, "variants", _get(un, "exported") or "two3x3") or {}
    best_variant: tuple[str, Any] = max(
        (_get(un, "variants") or {}).items(),
        key=lambda kv: _get(kv[1], "tiles_per_s", "ort_int8") or 0,
        default=("n/a", {}),
    )
    return {
        "daemon": {
            "rss_mib": _get(rt, "daemon", "rss_mib"),
            "pss_mib": _get(rt, "daemon", "pss_mib"),
            "rss_mib_max": _get(rt, "daemon", "rss_mib_max"),
            "cpu_percent": _get(rt, "daemon", "cpu_percent"),
            "imports_rss_mib": _get(mem, "imports", "daemon_imports_rss_mib"),
            "condition": "real time, every sensor on (seismic 100 Hz, GNSS 10 Hz), risk map, CPU hog, 60 s",
            "load": _get(rt, "daemon", "load"),
            "busy_before_hogs": _get(rt, "busy_before_hogs"),
        },
        "wire": {
            "p50_ms": _get(rt, "wire", "p50_ms"),
            "p99_ms": _get(rt, "wire", "p99_ms"),
            "max_ms": _get(rt, "wire", "max_ms"),
            "n": _get(rt, "wire", "n"),
            "hogs": _get(rt, "hogs"),
            "publish_leg_send_first_p50_p99_ms": [
                _get(wp, "send_first", "p50_ms"),
                _get(wp, "send_first", "p99_ms"),
            ],
            "publish_leg_outbox_first_p50_p99_ms": [
                _get(wp, "outbox_first", "p50_ms"),
                _get(wp, "outbox_first", "p99_ms"),
            ],
            "load": _get(rt, "wire", "load"),
        },
        "replay": {
            "x_realtime": _get(ing, "replay", "speed_x_real_time"),
            "mode": _get(ing, "replay", "mode"),
            "x_realtime_record_by_record": _get(ing, "replay", "speed_x_real_time_records"),
            "capture_s": _get(ing, "replay", "capture_s"),
            "cores": _get(ing, "replay", "cores"),
            "load": _get(ing, "replay", "load"),
        },
        "unet": {
            "int8_share_of_peak": _get(exported, "int8_share_of_peak"),
            "int8_vs_torch": _get(exported, "int8_vs_torch"),
            "int8_tiles_per_s": _get(exported, "tiles_per_s", "ort_int8"),
            "int8_gemm_peak_gops": _get(un, "int8_gemm_peak_gops"),
            "exported_reparam": _get(un, "exported"),
            "fastest_int8_reparam": best_variant[0],
            "load": _get(un, "load", "after"),
        },
    }


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def render_md(report: dict[str, Any], command: str) -> str:
    m, h = report["machine"], report["headline"]
    lines = [
        "# Benchmark report",
        "",
        f"`{command}` on {m['date_utc']}; {m['cpu_model']}, {m['cpus_usable']} CPUs, {m['platform']}, "
        f"Python {m['python']}. Raw results of every benchmark: `bench/report.json`. SYNTHETIC inputs "
        "(simulated devices, random U-Net weights) where each benchmark says so.",
        "",
        f"Load at start: {m['load_at_start']['loadavg']} on {m['load_at_start']['cpus']} CPUs"
        + (
            " — BUSY: other work shared the machine, every figure is a lower bound."
            if m["load_at_start"]["busy"]
            else "."
        ),
        "",
        "| group | figure | value | load (1/5/15 min) |",
        "|---|---|---|---|",
    ]
    for group, figs in h.items():
        la = _get(figs, "load", "loadavg")
        for k, v in figs.items():
            if k != "load":
                lines.append(f"| {group} | {k} | {_fmt(v)} | {la} |")
    lines += ["", "| benchmark | wall s | exit code |", "|---|---|---|"]
    for name, r in report["results"].items():
        lines.append(f"| {name} | {r['run']['wall_s']} | {r['run']['rc']} |")
    return "\n".join(lines) + "\n"


def main(
    quick: bool = typer.Option(False, help="Shorter captures and timings; no trained-run inference bench."),
    as_json: bool = typer.Option(False, "--json", help="Last stdout line: the headline as one JSON object."),
    skip: list[str] = typer.Option([], help="Benchmarks to leave out (memory, realtime, ingest, unet, ...)."),
    out_dir: Path = typer.Option(BENCH, "--out", help="Where REPORT.md and report.json go."),
    work: Path = typer.Option(
        Path(tempfile.gettempdir()) / "lews-bench-work", help="Scratch / training runs."
    ),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "quick": quick}
    results: dict[str, Any] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lews-bench-") as tmp_s:
        for name, (args, timeout_s) in plan(quick, work).items():
            if name not in skip:
                results[name] = run_bench(name, args, Path(tmp_s), timeout_s)
    report["total_wall_s"] = round(time.monotonic() - t0, 1)
    report["headline"] = headline(results)
    report["results"] = results
    command = "python bench/run_all.py" + (" --quick" if quick else "") + (" --json" if as_json else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out_dir / "REPORT.md").write_text(render_md(report, command))
    failed = [n for n, r in results.items() if r["run"]["rc"] != 0]
    log.info("wrote %s in %s s; failed: %s", out_dir / "REPORT.md", report["total_wall_s"], failed or "none")
    if as_json:
        typer.echo(
            json.dumps({**report["headline"], "failed": failed, "total_wall_s": report["total_wall_s"]})
        )
    raise typer.Exit(code=1 if failed else 0)


if __name__ == "__main__":
    typer.run(main)
