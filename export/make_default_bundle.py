"""Rebuild the default DEMO bundle in bundles/demo (small networks trained on SYNTHETIC data).

    .venv/bin/python -m export.make_default_bundle [--out bundles/demo] [--keys bundles/demo-keys]
        [--raster bundles/demo-site/site_raster.npz] [--work DIR]

It drives the toolchain's own command lines, exactly as a user would:
`agent-export data synth series` (2 stations), `agent-export train displacement`,
`agent-export data synth scenes`, `agent-export train unet`, then `agent-export bundle` signed with
the DEMO key in bundles/demo-keys (created with `agent-export keygen` if missing). It also writes the
demo site's SYNTHETIC static raster for the gateway's risk map. The demo key is public: a gateway that
trusts it trusts anyone. Never use it for a real site.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from agent.errors import ExportError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
MAX_BYTES = 5 * 1024 * 1024
# Tiny settings: the demo must build in a few minutes on a 2-core laptop.
SERIES = (("SYN1", 0), ("SYN2", 1))
DAYS = 730
DISP_EPOCHS = 40
SCENE_TILES = 64
UNET_EPOCHS = 24  # synthetic test Dice: 8 epochs 0.57, 24 epochs 0.68 (base 8 at 8 epochs: 0.67)
# 4 x 4 space-to-depth, one 32-channel stage, a 64-channel bottleneck: x6.3 the INT8 tiles/s of the
# earlier base 8 / depth 3 (2-core AMD EPYC) at a better, steadier Bijie Dice (docs/performance.md 4)
UNET_BASE = 32
UNET_DEPTH = 1
UNET_S2D = 4
UNET_ARCHITECTURE = ("--base", str(UNET_BASE), "--depth", str(UNET_DEPTH), "--s2d", str(UNET_S2D))
# The demo site measures GNSS and rain only (its geophone is off: 100 Hz cannot be time-compressed), so
# the demo model is trained without the columns the demo gateway never has.
DEMO_DROPPED = "groundwater_m,pgv_mm_s,seismic_events"


def _agent_export(*args: str) -> None:
    cmd = [sys.executable, "-m", "export.cli", *args]
    log.info("$ agent-export %s", " ".join(args))
    env = {**os.environ, "LEWS_LOG_LEVEL": os.environ.get("LEWS_LOG_LEVEL", "WARNING")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, check=False)
    if proc.returncode != 0:
        raise ExportError(
            f"`agent-export {' '.join(args)}` failed with exit code {proc.returncode}",
            fix="read its error above; the demo bundle was not changed",
        )


def make_default_bundle(out: Path, keys: Path, work: Path, *, threads: int = 1, reuse: bool = False) -> Path:
    """Train (or, with reuse, keep the runs already in `work`) and bundle; returns `out`."""
    disp_run, unet_run = work / "displacement-run", work / "unet-run"
    if not (reuse and (disp_run / "run.json").is_file() and (unet_run / "run.json").is_file()):
        _train(work, disp_run, unet_run, threads)
    if not (keys / "signing.key").is_file():
        _agent_export("keygen", "--out", str(keys))
    _agent_export("bundle", str(disp_run), str(unet_run), "--sign-key", str(keys / "signing.key"),
                  "--out", str(out), "--bundle-id", "demo-synthetic", "--force")  # fmt: skip
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        raise ExportError(
            f"{out} is {size / 2**20:.1f} MiB, over the {MAX_BYTES / 2**20:.0f} MiB demo budget",
            fix="lower UNET_BASE in export/make_default_bundle.py",
        )
    log.info("demo bundle %s: %.2f MiB", out, size / 2**20)
    return out


def _train(work: Path, disp_run: Path, unet_run: Path, threads: int) -> None:
    series = []
    for station, seed in SERIES:
        csv = work / f"{station.lower()}.csv"
        _agent_export("data", "synth", "series", "--out", str(csv), "--days", str(DAYS), "--seed", str(seed),
                      "--station", station, "--drop", DEMO_DROPPED)  # fmt: skip
        series.append(str(csv))
    _agent_export("train", "displacement", *series, "--out", str(disp_run), "--epochs", str(DISP_EPOCHS),
                  "--gbr-estimators", "20", "--threads", str(threads))  # fmt: skip
    scenes = work / "scenes"
    _agent_export("data", "synth", "scenes", "--out", str(scenes), "--count", str(SCENE_TILES), "--seed", "0")
    _agent_export("train", "unet", str(scenes), "--out", str(unet_run), "--epochs", str(UNET_EPOCHS),
                  *UNET_ARCHITECTURE, "--threads", str(threads))  # fmt: skip


def write_demo_site_raster(out: Path, size: int = 256, seed: int = 11) -> Path:
    """The demo site's static raster channels (SYNTHETIC scene, export.raster.synthetic) as an .npz the
    gateway reads (agent/riskmap.py); the LSI channel is recomputed there from live rain."""
    from export.raster.synthetic import make_scene

    scene = make_scene(np.random.default_rng(seed), size=size)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {
        name: np.asarray(a, dtype=np.float32) for name, a in scene.static.items()
    }
    arrays["synthetic"] = np.array(True)
    np.savez_compressed(out, allow_pickle=False, **arrays)
    log.info("demo site raster %s: %dx%d, channels %s (SYNTHETIC)", out, size, size, sorted(arrays))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Rebuild the DEMO bundle (SYNTHETIC data, demo-only key).")
    ap.add_argument("--out", type=Path, default=REPO / "bundles" / "demo")
    ap.add_argument("--keys", type=Path, default=REPO / "bundles" / "demo-keys")
    ap.add_argument("--work", type=Path, default=None, help="keep the synthetic data and runs here")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reuse", action="store_true", help="with --work: keep runs already trained there")
    ap.add_argument("--raster", type=Path, default=REPO / "bundles" / "demo-site" / "site_raster.npz")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    write_demo_site_raster(args.raster)
    try:
        if args.work is not None:
            args.work.mkdir(parents=True, exist_ok=True)
            make_default_bundle(args.out, args.keys, args.work, threads=args.threads, reuse=args.reuse)
        else:
            with tempfile.TemporaryDirectory(prefix="lews-demo-") as tmp:
                make_default_bundle(args.out, args.keys, Path(tmp), threads=args.threads)
    except ExportError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
