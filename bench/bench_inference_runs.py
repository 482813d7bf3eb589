"""Tiny SYNTHETIC training runs with the demo bundle's architecture, then bench_inference.py on them
(torch eager vs onnxruntime FP32/INT8, both networks, 1 and 2 threads); used by ``run_all.py``.

    .venv/bin/python bench/bench_inference_runs.py [--work DIR] [--quick] --json OUT

The runs are trained into ``--work`` and reused on the next call (training length does not change
inference time).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

log = logging.getLogger("bench.inference_runs")
REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _run(name: str, args: list[str], timeout_s: float) -> tuple[dict[str, Any], str]:
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
    return {"wall_s": round(time.monotonic() - t0, 1), "rc": rc}, out


def train_runs(work: Path) -> tuple[Path, Path] | None:
    """Tiny SYNTHETIC runs with the demo bundle's architecture (reused when already in ``work``)."""
    from export.make_default_bundle import DEMO_DROPPED, UNET_ARCHITECTURE

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
                    *UNET_ARCHITECTURE,
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
        return {"training": None}
    out: dict[str, Any] = {}
    for threads in (1, 2):
        args = ["bench/bench_inference.py", *map(str, runs), "--threads", str(threads)]
        args += ["--min-seconds", "0.5" if quick else "2", "--json", str(tmp / f"t{threads}.json")]
        meta, _text = _run(f"bench_inference_t{threads}", args, 1200)
        f = tmp / f"t{threads}.json"
        out[f"threads_{threads}"] = json.loads(f.read_text()) if meta["rc"] == 0 and f.is_file() else None
    return out


def main(
    work: Path = typer.Option(
        Path(tempfile.gettempdir()) / "lews-bench-work", help="Training runs (reused)."
    ),
    quick: bool = typer.Option(False, help="Shorter timings."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lews-bench-inf-") as d:
        result = bench_inference(Path(d), work, quick)
    json_out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    if any(v is None for v in result.values()):
        raise typer.Exit(code=1)


if __name__ == "__main__":
    typer.run(main)
