"""Real labelled ground: Bijie image/mask pairs -> tiles -> k-fold CV by image -> evaluate (per fold and
pooled, every model) -> --images -> a signed bundle -> the gateway's risk map over a georeferenced
GeoTIFF mosaic. Tiny widths, one epoch, 3 images at 64 px: seconds, not a measurement (docs/riskmap.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.export_cli import unet_app
from typer.testing import CliRunner

from agent.inference.manager import ModelManager
from agent.inference.settings import InferenceSettings
from agent.riskmap import RiskMapper, load_site_raster
from export.raster.tiles import open_tileset
from export.unet.data import Brightness, augment
from export.unet.metrics import best_threshold
from export.unet.references import index_score

torch.set_num_threads(1)
IDS = ("10040", "10242", "10611")
KEYS = REPO_KEYS = Path(__file__).resolve().parent.parent / "bundles" / "demo-keys"
MODELS = {"unet", "enhanced", "plain", "hybrid", "random_forest", "index_threshold"}
METRICS = {"dice", "iou", "precision", "recall", "auc"}


def _subset(src: Path, dst: Path, ids: tuple[str, ...]) -> Path:
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for i in ids:
            shutil.copy(src / sub / f"{i}.png", dst / sub / f"{i}.png")
    return dst


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bijie")
    images = _subset(shared_data / "bijie-landslide-mini", root / "mini", IDS)
    runner, app = CliRunner(), unet_app()
    r = runner.invoke(
        app,
        ["data", "import", "bijie", str(images), "--out", str(root / "T"), "--size", "64", "--tile", "32"],
    )
    assert r.exit_code == 0, r.output
    args = ["train", "unet", str(root / "T"), "--out", str(root / "R"), "--folds", "3", "--epochs", "1"]
    r = runner.invoke(app, [*args, "--base", "4", "--depth", "2", "--tile", "32", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    return {"root": root, "images": images, "tiles": root / "T", "run": root / "R"}


def test_import_writes_named_raw_channels_one_scene_per_image(run: dict[str, Path]) -> None:
    ts = open_tileset(run["tiles"])
    assert ts.channels == ["red", "green", "blue", "grvi"] and ts.meta["synthetic"] is False
    assert ts.meta["import"]["kind"] == "bijie" and len(ts.records) == 3 * 4
    assert {r.scene for r in ts.records} == set(IDS)
    x, y = ts.load()
    assert x.shape == (12, 4, 32, 32) and set(np.unique(y)) <= {0, 1} and 0 < y.mean() < 0.2
    assert x[:, :3].min() >= 0 and x[:, :3].max() <= 1  # raw reflectance: normalisation is per fold
    g, r = x[:, 1].astype(np.float64), x[:, 0].astype(np.float64)
    np.testing.assert_allclose(x[:, 3], (g - r) / (g + r), atol=1e-5)


def test_cv_folds_never_train_on_their_test_image_and_thresholds_come_from_training(
    run: dict[str, Path],
) -> None:
    doc = json.loads((run["run"] / "run.json").read_text())
    ts = open_tileset(run["tiles"])
    scene = {r.id: r.scene for r in ts.records}
    assert doc["cv"]["k"] == 3 and doc["channels"] == ["red", "green", "blue", "grvi"]
    tested = []
    for fd in doc["cv"]["folds"]:
        test_scenes = {scene[i] for i in fd["split"]["test"]}
        train_scenes = {scene[i] for i in fd["split"]["train"] + fd["split"]["val"]}
        assert test_scenes == set(fd["test_images"]) and not test_scenes & train_scenes
        tested += fd["test_images"]
        # the -GRVI threshold is the Dice-best one on the fold's training images, not its test image
        x, y = ts.load(fd["split"]["train"] + fd["split"]["val"])
        expect = best_threshold(index_score(x, doc["channels"]), y)
        assert fd["thresholds"]["index_threshold"] == pytest.approx(expect)
        assert len(fd["normalisation"]["mean"]) == 4
    assert sorted(tested) == sorted(IDS)  # every image is tested exactly once


def test_evaluate_reports_every_model_per_fold_and_pooled(run: dict[str, Path]) -> None:
    r = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(run["run"]), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["evaluation"] == "cross-validation" and rep["folds"] == 3 and rep["images"] == 3
    assert set(rep["models"]) == MODELS and rep["unet_variant"] == "enhanced"
    for name, m in rep["models"].items():
        assert set(m["pooled"]) == METRICS and len(m["folds"]) == 3, name
        assert set(m["mean"]) == set(m["std"]) == METRICS
        for f in m["folds"]:
            assert set(f) >= METRICS and f["tiles"] == 4
    assert rep["models"]["unet"] == rep["models"]["enhanced"]
    idx = rep["models"]["index_threshold"]["pooled"]
    assert idx["auc"] is not None and idx["auc"] > 0.7  # -GRVI ranks real scars above vegetation
    doc = json.loads((run["run"] / "run.json").read_text())
    assert doc["cv_metrics"]["index_threshold"] == idx  # train-time and from-disk evaluation agree
    table = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(run["run"])])
    assert table.exit_code == 0 and "3-fold CV" in table.output and "index_threshold" in table.output


def test_evaluate_images_uses_the_final_models_on_another_dir(
    run: dict[str, Path], shared_data: Path
) -> None:
    other = _subset(shared_data / "bijie-landslide-mini", run["root"] / "other", ("10009", "10040"))
    r = CliRunner().invoke(
        unet_app(), ["evaluate", "unet", str(run["run"]), "--json", "--images", str(other)]
    )
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["evaluation"] == "images" and rep["images"] == 2 and set(rep["models"]) == MODELS
    assert rep["images_seen_in_training"] == ["10040"]  # said, not hidden
    for m in rep["models"].values():
        assert set(m["pooled"]) == METRICS and len(m["folds"]) == 2


def test_brightness_jitter_is_a_raw_gain_and_leaves_ratio_channels_alone() -> None:
    rng = np.random.default_rng(0)
    mean, std = [0.5, 0.0], [0.2, 1.0]
    b = Brightness.for_stack(["red", "grvi"], frozenset({"red"}), mean, std)
    assert b is not None and b.channels == (0,)
    gains = []
    for seed in range(6):
        raw = rng.uniform(0.1, 0.9, (1, 2, 8, 8)).astype(np.float32)
        x = torch.from_numpy((raw - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]).float()
        y = torch.zeros(1, 1, 8, 8)
        xa, _ = augment(x, y, torch.Generator().manual_seed(seed), b)
        xg, _ = augment(x, y, torch.Generator().manual_seed(seed), None)  # same rotation/flip draws
        gain = ((xa[0, 0] * std[0] + mean[0]) / (xg[0, 0] * std[0] + mean[0])).ravel()
        assert torch.allclose(gain, gain[:1].expand_as(gain), atol=1e-4)  # one raw gain per tile
        torch.testing.assert_close(xa[0, 1], xg[0, 1])  # GRVI untouched
        gains.append(float(gain[0]))
    assert all(0.79 < g < 1.21 for g in gains) and max(gains) - min(gains) > 0.05


def test_bundle_from_the_real_data_run_drives_the_gateway_risk_map(
    run: dict[str, Path], tmp_path: Path
) -> None:
    from export.bundle import build_bundle
    from export.run_loader import load_run

    runner, app = CliRunner(), unet_app()
    tif, npz = tmp_path / "mosaic.tif", tmp_path / "site.npz"
    ids = ",".join(IDS)
    r = runner.invoke(
        app,
        [
            "data",
            "import",
            "bijie-geotiff",
            str(run["images"]),
            "--ids",
            ids,
            "--out",
            str(tif),
            "--size",
            "64",
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["data", "import", "site-raster", str(tif), "--out", str(npz)])
    assert r.exit_code == 0, r.output
    pred_args = [
        "predict",
        "unet",
        str(run["run"]),
        str(tif),
        "--out",
        str(tmp_path / "pred"),
        "--overlap",
        "8",
        "--margin",
        "4",
    ]
    r = runner.invoke(app, pred_args)
    assert r.exit_code == 0, r.output
    pred = json.loads((tmp_path / "pred" / "predictions.json").read_text())["outputs"][0]
    assert pred["georeferenced"] and pred["shape"] == [64, 192] and pred["channels"][3] == "grvi"
    bundle = build_bundle([load_run(run["run"])], KEYS / "signing.key", tmp_path / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry = manifest["models"][0]
    assert entry["name"] == "unet" and entry["feature_names"] == ["red", "green", "blue", "grvi"]
    assert entry["meta"]["channels"] == ["red", "green", "blue", "grvi"] and entry["meta"]["tile_size"] == 32
    assert entry["meta"]["stitching"]["overlap"] == 8 and entry["meta"]["stitching"]["margin"] == 4
    mgr = ModelManager(
        InferenceSettings(bundle_dir=bundle, public_key=KEYS / "signing.pub", state_dir=tmp_path / "state")
    )
    mgr.start()
    site = load_site_raster(npz, ["red", "green", "blue", "grvi"])
    assert float(site["pixel_m"]) == 4.0 and "mask" not in site
    mapper = RiskMapper(site, mgr)
    res = mapper.run(0.0, 0.0, now=10.0)
    assert res is not None, mapper.last_reason
    assert res.probability.shape == (64, 192) and np.isfinite(res.probability).all()
    assert res.probability.min() >= 0.0 and res.probability.max() <= 1.0
    assert res.summary["channels"] == ["red", "green", "blue", "grvi"] and "lsi_mean" not in res.summary
    # the same bundle against a site raster without green: refused by name, not guessed
    np.savez(tmp_path / "rb.npz", red=site["red"], blue=site["blue"])
    bad = RiskMapper(load_site_raster(tmp_path / "rb.npz"), mgr)
    assert bad.run(0.0, 0.0, now=20.0) is None and bad.counters["skipped_missing_channel"] == 1
    assert "lacks channel 'green'" in bad.last_reason and "channel 'grvi'" in bad.last_reason
