"""What the daemon's memory is made of: RSS/PSS by import, and the onnxruntime session footprint.

    .venv/bin/python bench/bench_memory.py [--json OUT] [--batches 5] [--maps 4]

1. Imports: a fresh interpreter imports the daemon's dependencies one after the other (numpy, sqlite3,
   pydantic, paho, jsonschema, onnxruntime, ... and finally ``agent.runtime_cli``, what ``agent run``
   loads) and records RSS, PSS (/proc/self/smaps_rollup) and module count after each: the deltas are
   what each import adds on top of the ones before. ``scipy.signal`` is measured on top of all of them
   in the same process, as a reference: the daemon no longer imports it (agent/sensors/dsp.py).
2. onnxruntime: for each session option set (the daemon's choice ``arena off, memory pattern off`` and
   the alternatives) a fresh process loads the demo bundle's INT8 U-Net, runs ``--batches`` batches of
   the risk map's batch size, and records RSS/PSS after loading and after the batches, and the median
   batch time (the price of each option).
3. Risk map: a fresh process per malloc arena limit (the daemon's 1, and 2) starts the demo bundle's
   model manager like the daemon (verification with golden vectors), trims, then runs ``--maps`` risk
   maps of the demo site in a worker thread (like the daemon's job) and records RSS before each, its
   peak (VmHWM, reset before each map through /proc/self/clear_refs) and RSS after, with the map time.
Every group carries the load average when it was taken. Last stdout line: one JSON object.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memlib import load

REPO = Path(__file__).resolve().parent.parent
IMPORTS = [
    "numpy",
    "sqlite3",
    "pydantic",
    "paho.mqtt.client",
    "jsonschema",
    "cryptography.hazmat.primitives.hmac",
    "prometheus_client",
    "onnxruntime",
    "serial",
    "pyubx2",
    "pynmeagps",
    "agent.sensors.seismic",
    "agent.publish.publisher",
    "agent.daemon",
    "agent.cli",
    "agent.runtime_cli",
    "agent.sensors.clock",
]
REFERENCE_EXTRA = ["scipy.signal"]

_IMPORT_SCRIPT = r"""
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
from memlib import rss_pss_mib
rows = [{"module": "(python)", **rss_pss_mib(), "modules": len(sys.modules)}]
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
        ok = True
    except ImportError:
        ok = False
    rows.append({"module": name, "ok": ok, **rss_pss_mib(), "modules": len(sys.modules)})
print(json.dumps(rows))
"""

_ORT_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from memlib import rss_pss_mib
import numpy as np
import onnxruntime as ort
path, arena, pattern = sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
batches, batch = int(sys.argv[5]), int(sys.argv[6])
before = rss_pss_mib()
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.enable_cpu_mem_arena = arena
opts.enable_mem_pattern = pattern
opts.log_severity_level = 3
s = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
loaded = rss_pss_mib()
inp = s.get_inputs()[0]
shape = [batch if not isinstance(d, int) else d for d in inp.shape]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
times = []
for _ in range(batches):
    t0 = time.perf_counter()
    s.run(None, {inp.name: x})
    times.append((time.perf_counter() - t0) * 1e3)
after = rss_pss_mib()
trimmed = None
if sys.argv[7] == "1":
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    trimmed = rss_pss_mib()
print(json.dumps({"before": before, "loaded": loaded, "after_batches": after, "after_trim": trimmed,
                  "batch_ms_median": sorted(times)[len(times) // 2], "input_shape": shape}))
"""


_RISKMAP_SCRIPT = r"""
import json, sys, tempfile, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
def status():
    d = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            d[k] = round(int(v.split()[0]) / 1024, 2)
    return d
from agent.inference.heap import limit_malloc_arenas, release_freed_memory
limit_malloc_arenas(int(sys.argv[2]))
from agent.inference.manager import ModelManager
from agent.inference.settings import InferenceSettings
from agent.riskmap import RiskMapper, load_site_raster
b = Path("bundles")
mgr = ModelManager(InferenceSettings(bundle_dir=b / "demo", public_key=b / "demo-keys" / "signing.pub",
                                     state_dir=Path(tempfile.mkdtemp())))
mgr.start()
started = status()["VmRSS"]
release_freed_memory()
trimmed = status()["VmRSS"]
mapper = RiskMapper(load_site_raster(b / "demo-site" / "site_raster.npz"), mgr)
maps = []
def job():
    for i in range(int(sys.argv[3])):
        before = status()["VmRSS"]
        Path("/proc/self/clear_refs").write_text("5")
        t0 = time.perf_counter()
        mapper.run(20.0, 48.0, now=1000.0 + i)
        ms = (time.perf_counter() - t0) * 1e3
        s = status()
        maps.append({"before": before, "peak": s["VmHWM"], "after": s["VmRSS"], "ms": round(ms, 1)})
t = threading.Thread(target=job)
t.start()
t.join()
print(json.dumps({"after_start": started, "after_start_trim": trimmed, "maps": maps}))
"""


def _py(script: str, *args: str, timeout: float = 600) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", script, str(REPO / "bench"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def imports() -> dict[str, Any]:
    taken = load()
    rows = _py(_IMPORT_SCRIPT, json.dumps(IMPORTS + REFERENCE_EXTRA))
    table = []
    for prev, row in itertools.pairwise(rows):
        table.append(
            {
                "module": row["module"],
                "ok": row.get("ok", True),
                "rss_mib": row["rss_mib"],
                "pss_mib": row["pss_mib"],
                "adds_rss_mib": round(row["rss_mib"] - prev["rss_mib"], 2),
                "adds_pss_mib": round(row["pss_mib"] - prev["pss_mib"], 2),
                "adds_modules": row["modules"] - prev["modules"],
                "daemon_imports": row["module"] not in REFERENCE_EXTRA,
            }
        )
    daemon = [r for r in table if r["daemon_imports"]][-1]
    return {
        "python_rss_mib": rows[0]["rss_mib"],
        "rows": table,
        "daemon_imports_rss_mib": daemon["rss_mib"],
        "daemon_imports_pss_mib": daemon["pss_mib"],
        "load": taken,
    }


def ort_options(batches: int) -> dict[str, Any]:
    model = REPO / "bundles" / "demo" / "unet.int8_ort.onnx"
    taken = load()
    out: dict[str, Any] = {"model": str(model.relative_to(REPO)), "configs": {}}
    for name, arena, pattern, batch, trim in (
        ("arena_on_pattern_on_batch8 (onnxruntime default)", "1", "1", "8", "0"),
        ("arena_off_pattern_on_batch8", "0", "1", "8", "0"),
        ("arena_off_pattern_off_batch8", "0", "0", "8", "0"),
        ("arena_off_pattern_off_batch8_trim", "0", "0", "8", "1"),
        ("arena_off_pattern_off_batch2", "0", "0", "2", "0"),
        ("arena_off_pattern_off_batch2_trim", "0", "0", "2", "1"),
        ("arena_off_pattern_off_batch1_trim (daemon)", "0", "0", "1", "1"),
    ):
        r = _py(_ORT_SCRIPT, str(model), arena, pattern, str(batches), batch, trim)
        r["batch"] = int(batch)
        r["tiles_per_s"] = round(int(batch) / (r["batch_ms_median"] / 1e3), 2)
        r["adds_rss_mib_by_batches"] = round(r["after_batches"]["rss_mib"] - r["loaded"]["rss_mib"], 2)
        r["adds_rss_mib_by_session"] = round(r["after_batches"]["rss_mib"] - r["before"]["rss_mib"], 2)
        out["configs"][name] = r
    out["load"] = taken
    return out


def riskmap(maps: int) -> dict[str, Any]:
    taken = load()
    out: dict[str, Any] = {}
    for arenas in ("1", "2"):
        r = _py(_RISKMAP_SCRIPT, arenas, str(maps))
        r["peak_max"] = max(m["peak"] for m in r["maps"])
        r["after_last"] = r["maps"][-1]["after"]
        r["ms_median"] = sorted(m["ms"] for m in r["maps"])[len(r["maps"]) // 2]
        out[f"arenas_{arenas}" + (" (daemon)" if arenas == "1" else "")] = r
    out["load"] = taken
    return out


def run(batches: int = 5, maps: int = 4) -> dict[str, Any]:
    return {
        "benchmark": "memory",
        "imports": imports(),
        "onnxruntime": ort_options(batches),
        "riskmap": riskmap(maps),
    }


def main(
    json_out: Path | None = typer.Option(None, "--json", help="Also write the figures here."),
    batches: int = typer.Option(5, help="U-Net batches per onnxruntime option set."),
    maps: int = typer.Option(4, help="Risk maps per malloc arena setting."),
) -> None:
    result = run(batches, maps)
    if json_out is not None:
        json_out.write_text(json.dumps(result) + "\n", encoding="utf-8")
    typer.echo(json.dumps(result))


if __name__ == "__main__":
    typer.run(main)
