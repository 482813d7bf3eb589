"""Run every benchmark in bench/ once, on this machine, and write bench/REPORT.md and bench/report.json.

    .venv/bin/python bench/run_all.py [--work DIR] [--quick] [--skip NAME ...]

Each benchmark runs as its own process (one after the other, so they do not compete for the CPU) and
hands back its figures as JSON (bench_bridge prints text; its figures are parsed from it). The inference
benchmark needs training runs: tiny SYNTHETIC runs with the demo bundle's architecture are trained into
``--work`` (kept there and reused on the next run); training length does not change inference time.
The report states the machine (CPU model, cores, RAM, load at start: the machine may be shared), the
library versions and thread counts, and the headline ratios measured in this one run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger("bench.run_all")

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PY = sys.executable
app = typer.Typer(add_completion=False)


# ---- machine ----------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except ImportError:
        return "not installed"


def machine() -> dict[str, Any]:
    import psutil

    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": _cpu_model(),
        "cpus_logical": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime"),
        "torch": _version("torch"),
        "env_threads": {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
        },
    }


# ---- running one benchmark --------------------------------------------------------------------------
def _run(name: str, args: list[str], timeout_s: float) -> tuple[dict[str, Any], str]:
    """Run a benchmark process; returns ({wall_s, rc}, stdout+stderr)."""
    t0 = time.monotonic()
    log.info("running %s: %s", name, " ".join(args))
    try:
        proc = subprocess.run(
            [PY, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO), "LEWS_LOG_LEVEL": "WARNING"},
        )
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = -1, f"timed out after {timeout_s:.0f} s: {exc}"
    wall = round(time.monotonic() - t0, 1)
    if rc != 0:
        log.error("%s failed (rc %s): %s", name, rc, out[-2000:])
    return {"wall_s": wall, "rc": rc}, out


def _json_bench(name: str, args: list[str], tmp: Path, timeout_s: float) -> dict[str, Any]:
    out_file = tmp / f"{name}.json"
    meta, text = _run(name, [*args, "--json", str(out_file)], timeout_s)
    result: dict[str, Any] = {"run": meta}
    if meta["rc"] == 0 and out_file.is_file():
        result["result"] = json.loads(out_file.read_text())
    else:
        result["error_tail"] = text[-3000:]
    return result


BRIDGE_PATTERNS: dict[str, str] = {
    "site_stream_frames_per_s": r"^decode: ([\d,]+) frames/s",
    "site_stream_MB_per_s": r"^decode: [\d,]+ frames/s, ([\d.]+) MB/s",
    "cpu_fraction_of_real_time_pct": r"^CPU per real-time second.*\(([\d.]+)%\)",
    "rain_frames_per_s": r"^decode RAIN only: ([\d,]+) frames/s",
    "seismic_samples_per_s": r"^decode SEISMIC.*= ([\d,]+) samples/s",
    "pty_bulk_frames_per_s": r"read\(in_waiting\) ([\d,]+) frames/s",
}


def bench_bridge(tmp: Path, quick: bool) -> dict[str, Any]:
    meta, text = _run("bench_bridge", ["bench/bench_bridge.py", "--seconds", "120" if quick else "600"], 900)
    figures: dict[str, float] = {}
    for key, pattern in BRIDGE_PATTERNS.items():
        m = re.search(pattern, text, re.MULTILINE)
        if m:
            figures[key] = float(m.group(1).replace(",", ""))
    return {"run": meta, "result": figures, "text": text.strip().splitlines()[-12:]}


def train_runs(work: Path) -> tuple[Path, Path] | None:
    """Tiny SYNTHETIC runs with the demo bundle's architecture (reused when already in ``work``)."""
    from export.make_default_bundle import DEMO_DROPPED, UNET_BASE, UNET_DEPTH

    disp, unet = work / "displacement-run", work / "unet-run"
    steps: list[tuple[Path, list[list[str]]]] = [
        (
            disp,
            [
                [
                    "-m",
                    "export.cli",
                    "data",
                    "synth",
                    "series",
                    "--out",
                    str(work / "syn1.csv"),
                    "--days",
                    "400",
                    "--seed",
                    "0",
                    "--station",
                    "SYN1",
                    "--drop",
                    DEMO_DROPPED,
                ],
                [
                    "-m",
                    "export.cli",
                    "train",
                    "displacement",
                    str(work / "syn1.csv"),
                    "--out",
                    str(disp),
                    "--epochs",
                    "2",
                    "--gbr-estimators",
                    "5",
                    "--threads",
                    "1",
                ],
            ],
        ),
        (
            unet,
            [
                [
                    "-m",
                    "export.cli",
                    "data",
                    "synth",
                    "scenes",
                    "--out",
                    str(work / "scenes"),
                    "--count",
                    "16",
                    "--seed",
                    "0",
                ],
                [
                    "-m",
                    "export.cli",
                    "train",
                    "unet",
                    str(work / "scenes"),
                    "--out",
                    str(unet),
                    "--epochs",
                    "1",
                    "--base",
                    str(UNET_BASE),
                    "--depth",
                    str(UNET_DEPTH),
                    "--threads",
                    "1",
                ],
            ],
        ),
    ]
    for run_dir, cmds in steps:
        if (run_dir / "run.json").is_file():
            continue
        for cmd in cmds:
            meta, text = _run("train", cmd, 900)
            if meta["rc"] != 0:
                log.error("training for the inference benchmark failed: %s", text[-2000:])
                return None
    return disp, unet


def bench_inference(tmp: Path, work: Path, quick: bool) -> dict[str, Any]:
    runs = train_runs(work)
    if runs is None:
        return {"run": {"rc": -1, "wall_s": 0.0}, "error_tail": "training runs could not be made"}
    out: dict[str, Any] = {}
    for threads in (1, 2):
        args = ["bench/bench_inference.py", *map(str, runs), "--threads", str(threads)]
        args += ["--min-seconds", "0.5" if quick else "2"]
        out[f"threads_{threads}"] = _json_bench(f"bench_inference_t{threads}", args, tmp, 1200)
    return out


# ---- headline figures ---------------------------------------------------------------------------------
def _get(tree: Any, *path: Any) -> Any:
    for key in path:
        if (isinstance(tree, dict) and key in tree) or (
            isinstance(tree, list) and isinstance(key, int) and -len(tree) <= key < len(tree)
        ):
            tree = tree[key]
        else:
            return None
    return tree


def _r(x: Any, nd: int = 2) -> Any:
    return round(float(x), nd) if isinstance(x, (int, float)) else x


def headline(res: dict[str, Any]) -> dict[str, Any]:
    h: dict[str, Any] = {"inference": {}}
    for tkey, tres in (res.get("inference") or {}).items():
        for model, mres in (_get(tres, "result", "models") or {}).items():
            for batch, row in mres.items():
                if not batch.startswith("batch_"):
                    continue
                entry = {
                    k: {"median_ms": _r(v["median_ms"], 3), "x_vs_torch_eager": _r(v["speedup_vs_torch"])}
                    for k, v in row.items()
                    if isinstance(v, dict)
                }
                entry["int8_vs_fp32_ort"] = _r(row.get("int8_ort_vs_ort_fp32"))
                h["inference"][f"{model}/{batch}/{tkey}"] = entry
    ingest = _get(res, "ingest", "result")
    h["ingest"] = {
        "store_samples_per_s_batch2000_normal": _get(ingest, "store", 1, "samples_per_s"),
        "store_samples_per_s_batch50_full": _get(ingest, "store", 2, "samples_per_s"),
        "replay_speed_x_real_time": _get(ingest, "replay", "speed_x_real_time"),
        "replay_capture_s": _get(ingest, "replay", "capture_s"),
        "live_cpu_per_real_time_s": _get(ingest, "live", "cpu_per_real_time_s"),
        "bridge_decode_frames_per_s": _get(res, "bridge", "result", "site_stream_frames_per_s"),
        "gnss_cpu_ms_per_real_time_s": _r(
            _get(res, "gnss", "result", "realtime", "cpu_ms_per_realtime_s"), 3
        ),
        "gnss_framer_msgs_per_s": [
            {"stream": f.get("stream"), "parse": f.get("parse"), "msgs_per_s": round(f.get("msgs_per_s", 0))}
            for f in _get(res, "gnss", "result", "framer") or []
        ],
    }
    pub = _get(res, "publish", "result")
    h["publish"] = {
        "outbox_enqueue_per_s": _get(pub, "enqueue_per_s"),
        "publish_to_subscriber_ms": {
            m: {"p50": _get(pub, "latency", m, "p50_ms"), "p99": _get(pub, "latency", m, "p99_ms")}
            for m in ("FULL", "NORMAL")
        },
    }
    d = _get(res, "daemon", "result")
    h["daemon"] = {
        "wire_trip_to_broker_ms": {
            k: _get(d, "wire_trip_latency", k) for k in ("n", "p50_ms", "p99_ms", "max_ms")
        },
        "wire_any_change_to_broker_ms": {
            k: _get(d, "wire_all_latency", k) for k in ("n", "p50_ms", "p99_ms")
        },
        "cpu_percent_of_one_core": _get(d, "daemon_cpu_percent_of_one_core"),
        "rss_mb_max": _get(d, "daemon_rss_mb_max"),
        "threads": _get(d, "daemon_threads"),
        "speed_x": _get(d, "speed_x"),
    }
    return h


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,d}"
    return str(v)


def _x(v: Any) -> str:
    return f"x{v:.2f}" if isinstance(v, (int, float)) else "n/a"


def _summary_md(report: dict[str, Any]) -> list[str]:
    """The figures most quoted: one short table (README quotes it)."""
    h = report["headline"]
    rows = [
        (
            "wire trip -> broker latency p50 / p99 (ms)",
            f"{_fmt(_get(h, 'daemon', 'wire_trip_to_broker_ms', 'p50_ms'))} / "
            f"{_fmt(_get(h, 'daemon', 'wire_trip_to_broker_ms', 'p99_ms'))} "
            f"(n={_fmt(_get(h, 'daemon', 'wire_trip_to_broker_ms', 'n'))})",
        ),
        (
            "daemon CPU (% of one core) / RSS max (MiB), demo load",
            f"{_fmt(_get(h, 'daemon', 'cpu_percent_of_one_core'))} / {_fmt(_get(h, 'daemon', 'rss_mb_max'))}",
        ),
        (
            "replay speed vs real time (100 Hz seismic + 10 Hz GNSS)",
            f"x{_fmt(_get(h, 'ingest', 'replay_speed_x_real_time'))}",
        ),
        (
            "store ingest (samples/s, batch 2000, NORMAL)",
            _fmt(_get(h, "ingest", "store_samples_per_s_batch2000_normal")),
        ),
        ("bridge decode (frames/s, site stream)", _fmt(_get(h, "ingest", "bridge_decode_frames_per_s"))),
        (
            "publish -> subscriber p50 / p99 (ms, FULL sync)",
            f"{_fmt(_get(h, 'publish', 'publish_to_subscriber_ms', 'FULL', 'p50'))} / "
            f"{_fmt(_get(h, 'publish', 'publish_to_subscriber_ms', 'FULL', 'p99'))}",
        ),
    ]
    return ["| figure | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]]


def render_md(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark report",
        "",
        f"Written by `make bench` (`bench/run_all.py`) on {m['date_utc']}. All figures come from this "
        "one run on one machine; raw results of every benchmark are in `bench/report.json`. "
        "SYNTHETIC inputs where stated by each benchmark (simulated devices, tiny trained runs with "
        "the demo architecture).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']}, {m['cpus_usable']} usable of {m['cpus_logical']} logical CPUs; "
        f"RAM {m['ram_gib']} GiB",
        f"- load average at start: {m['load_avg_at_start']} "
        "(the machine may be shared: figures are lower bounds)",
        f"- {m['platform']}; Python {m['python']}, numpy {m['numpy']}, onnxruntime {m['onnxruntime']}, "
        f"torch {m['torch']}",
        "- threads: each benchmark states its own; inference is timed with 1 and 2 intra-op threads "
        "(torch.set_num_threads and onnxruntime intra_op_num_threads alike, inter-op 1)",
        "",
        "## Headline",
        "",
        *_summary_md(report),
        "",
        "## Inference: onnxruntime FP32 / INT8 vs torch eager FP32 (same run, same inputs)",
        "",
        "| model / batch / threads | torch eager ms | ort FP32 ms (x vs torch) | ort INT8 ms (x vs torch) "
        "| INT8 vs FP32 |",
        "|---|---|---|---|---|",
    ]
    for key, e in report["headline"]["inference"].items():
        te = _get(e, "torch_eager_fp32", "median_ms")
        f32, i8 = e.get("ort_fp32", {}), e.get("ort_int8_ort", {})
        lines.append(
            f"| {key} | {_fmt(te)} | {_fmt(f32.get('median_ms'))} ({_x(f32.get('x_vs_torch_eager'))}) | "
            f"{_fmt(i8.get('median_ms'))} ({_x(i8.get('x_vs_torch_eager'))}) | "
            f"{_x(e.get('int8_vs_fp32_ort'))} |"
        )
    lines += ["", "TensorRT: not measured here (no GPU on this machine); see docs/jetson.md."]
    load = max(m["load_avg_at_start"] or [0.0])
    if load >= (m["cpus_usable"] or 1):
        lines += [
            "",
            f"Caution: the load average at start ({load}) was at or above the {m['cpus_usable']} CPUs: "
            "other work shared the machine. Rows timed with 2 threads compete with it most (torch's thread "
            "pool spins when a core is taken), so a single odd row is contention, not the model; compare "
            "ratios within one row.",
        ]
    lines.append("")
    ing = report["headline"]["ingest"]
    lines += ["## Ingestion", "", "| figure | value |", "|---|---|"]
    for k, v in ing.items():
        if k != "gnss_framer_msgs_per_s":
            lines.append(f"| {k} | {_fmt(v)} |")
    for f in ing.get("gnss_framer_msgs_per_s") or []:
        lines.append(f"| GNSS framer, {f['stream']} ({f['parse']}) msgs/s | {_fmt(f['msgs_per_s'])} |")
    pub = report["headline"]["publish"]
    lines += [
        "",
        "## Publishing (outbox -> local mosquitto -> subscriber)",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for k, v in (pub.get("outbox_enqueue_per_s") or {}).items():
        lines.append(f"| outbox enqueue msgs/s, {k} | {_fmt(v)} |")
    for mode, v in pub["publish_to_subscriber_ms"].items():
        lines.append(
            f"| publish -> subscriber ms p50 / p99, synchronous={mode} | "
            f"{_fmt(v['p50'])} / {_fmt(v['p99'])} |"
        )
    d = report["headline"]["daemon"]
    lines += [
        "",
        "## Daemon under the demo load (SYNTHETIC storm, own process)",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for k, v in d.items():
        text = ", ".join(f"{a}={_fmt(b)}" for a, b in v.items()) if isinstance(v, dict) else _fmt(v)
        lines.append(f"| {k} | {text} |")
    lines += ["", "## Runs", "", "| benchmark | wall s | exit code |", "|---|---|---|"]
    for name, r in report["runs"].items():
        lines.append(f"| {name} | {_fmt(r.get('wall_s'))} | {r.get('rc')} |")
    lines.append("")
    return "\n".join(lines)


def _runs_table(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, r in res.items():
        if isinstance(r, dict) and "run" in r:
            out[name] = r["run"]
        elif isinstance(r, dict):
            for sub, rr in r.items():
                if isinstance(rr, dict) and "run" in rr:
                    out[f"{name}/{sub}"] = rr["run"]
    return out


@app.command()
def main(
    work: Path = typer.Option(
        Path(tempfile.gettempdir()) / "lews-bench-work", help="Training runs (reused)."
    ),
    quick: bool = typer.Option(False, help="Shorter measurements (for checking the script)."),
    skip: list[str] = typer.Option(
        [], help="Benchmarks to leave out (bridge, gnss, ingest, publish, inference, daemon)."
    ),
    out_dir: Path = typer.Option(BENCH, "--out", help="Where REPORT.md and report.json go."),
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine()}
    res: dict[str, Any] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lews-bench-") as tmp_s:
        tmp = Path(tmp_s)
        plan: dict[str, Callable[[], dict[str, Any]]] = {
            "bridge": lambda: bench_bridge(tmp, quick),
            "gnss": lambda: _json_bench(
                "bench_gnss", ["bench/bench_gnss.py", "--seconds", "120" if quick else "600"], tmp, 900
            ),
            "ingest": lambda: _json_bench(
                "bench_ingest",
                [
                    "bench/bench_ingest.py",
                    "--live-seconds",
                    "5" if quick else "20",
                    "--seconds",
                    "60" if quick else "300",
                ],
                tmp,
                1200,
            ),
            "publish": lambda: _json_bench(
                "bench_publish", ["bench/bench_publish.py", "--dir", str(tmp)], tmp, 900
            ),
            "inference": lambda: bench_inference(tmp, work, quick),
        }
        if (BENCH / "bench_daemon.py").is_file():
            plan["daemon"] = lambda: _json_bench(
                "bench_daemon", ["bench/bench_daemon.py", "--trips", "10" if quick else "20"], tmp, 900
            )
        for name, fn in plan.items():
            if name in skip:
                continue
            res[name] = fn()
    report["total_wall_s"] = round(time.monotonic() - t0, 1)
    report["runs"] = _runs_table(res)
    report["headline"] = headline(res)
    report["results"] = res
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out_dir / "REPORT.md").write_text(render_md(report))
    failed = [n for n, r in report["runs"].items() if r.get("rc") != 0]
    typer.echo(
        f"wrote {out_dir / 'REPORT.md'} and report.json in {report['total_wall_s']} s; "
        f"failed: {failed or 'none'}"
    )
    raise typer.Exit(code=1 if failed else 0)


if __name__ == "__main__":
    app()
