"""synth -> train -> evaluate -> export view -> predict, through the real CLI commands (tiny widths)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.export_cli import unet_app
from typer.testing import CliRunner

from agent.errors import TrainingError
from export.raster.synthetic import write_scene_geotiff
from export.raster.tiles import TileRecord, open_tileset
from export.run_loader import load_run
from export.unet.data import blocked_split
from export.unet.model import HybridConvBN
from export.unet.train import TrainConfig, train_variant

torch.set_num_threads(1)
MODELS = {"enhanced", "plain", "hybrid", "random_forest", "index_threshold", "lsi"}  # index: -NDVI
METRICS = {"dice", "iou", "precision", "recall", "auc"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("unet")
    runner = CliRunner()
    app = unet_app()
    r = runner.invoke(
        app, ["data", "synth", "scenes", "--out", str(root / "data"), "--count", "16", "--seed", "3"]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "train",
            "unet",
            str(root / "data"),
            "--out",
            str(root / "run"),
            "--epochs",
            "2",
            "--seed",
            "1",
            "--base",
            "4",
            "--depth",
            "2",
            "--threads",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    return root / "data", root / "run"


def test_run_dir_contents(trained: tuple[Path, Path]) -> None:
    _, run = trained
    doc = json.loads((run / "run.json").read_text())
    assert doc["kind"] == "unet" and doc["synthetic"] is True
    for f in ("enhanced.pt", "plain.pt", "hybrid.pt", "random_forest.joblib"):
        assert (run / f).is_file()
    split = doc["split"]
    scenes = {s: {i.split("_")[0] for i in split[s]} for s in ("train", "val", "test")}
    assert not (scenes["train"] & scenes["test"]) and not (scenes["train"] & scenes["val"])
    assert len(doc["normalisation"]["mean"]) == 7 and set(doc["thresholds"]) == MODELS
    assert len(doc["history"]["enhanced"]) == 2


def test_evaluate_json_contract(trained: tuple[Path, Path]) -> None:
    _, run = trained
    r = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(run), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["test_tiles"] >= 4 and set(rep["models"]) == MODELS
    for m in rep["models"].values():
        assert set(m) == METRICS
    doc = json.loads((run / "run.json").read_text())
    for name in MODELS:  # evaluation from disk reproduces the metrics computed at train time
        for k in METRICS:
            assert rep["models"][name][k] == pytest.approx(doc["test_metrics"][name][k], abs=1e-5)
    # the per-pixel random forest learns the synthetic physical rule even from a few tiles
    assert rep["models"]["random_forest"]["auc"] > 0.75
    table = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(run)])
    assert table.exit_code == 0 and "random_forest" in table.stdout


def test_load_run_gives_the_reparameterised_export_model(trained: tuple[Path, Path]) -> None:
    _, run = trained
    loaded = load_run(run)
    (m,) = loaded.models
    assert m.name == "unet" and m.task == "susceptibility_map" and loaded.kind == "unet"
    assert not any(isinstance(x, HybridConvBN | torch.nn.BatchNorm2d) for x in m.module.modules())
    assert not m.module.training
    cal = m.calibration_inputs["tiles"]
    assert cal.dtype == np.float32 and cal.shape[1:] == (7, 128, 128) and cal.shape[0] >= 4
    assert "training-split" in m.calibration_description
    assert m.meta["channels"] == ["smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi"]
    assert m.meta["tile_size"] == 128 and 0 < m.meta["threshold"] < 1 and "p0_mm_h" in m.meta["lsi_params"]
    with torch.no_grad():
        out = m.module(torch.from_numpy(m.test_inputs["tiles"][:2])).numpy()
    assert out.shape == (2, 1, 128, 128) and out.min() >= 0 and out.max() <= 1
    assert m.test_targets["probability"].shape[0] == m.test_inputs["tiles"].shape[0]


def test_predict_landslide4sense_and_multi_tile_geotiff(
    trained: tuple[Path, Path], shared_data: Path, tmp_path: Path
) -> None:
    import rasterio

    _, run = trained
    h5s = sorted((shared_data / "landslide4sense-test-patches").glob("*.h5"))
    tif = tmp_path / "site.tif"
    write_scene_geotiff(tif, 288, seed=9)  # SYNTHETIC scene, 3x3 tiles
    out = tmp_path / "pred"
    r = CliRunner().invoke(
        unet_app(),
        [
            "predict",
            "unet",
            str(run),
            *map(str, h5s),
            str(tif),
            "--out",
            str(out),
            "--rain-mm-h",
            "15",
            "--rain-h",
            "36",
        ],
    )
    assert r.exit_code == 0, r.output
    for h in h5s:
        p = np.load(out / f"{h.stem}_probability.npy")
        assert p.shape == (128, 128) and np.isfinite(p).all() and 0 <= p.min() <= p.max() <= 1
        assert (out / f"{h.stem}_preview.png").stat().st_size > 1000
    with rasterio.open(out / "site_probability.tif") as ds, rasterio.open(tif) as src:
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == (288, 288)
        prob = ds.read(1)
    assert np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
    summary = json.loads((out / "predictions.json").read_text())
    assert len(summary["outputs"]) == 5 and summary["outputs"][-1]["tiles"] == 9


def test_training_is_deterministic(trained: tuple[Path, Path]) -> None:
    data, _ = trained
    x, y = open_tileset(data).load()
    x = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / x.std(axis=(0, 2, 3), keepdims=True)
    x = np.ascontiguousarray(x[:4, :, :64, :64], dtype=np.float32)
    y = np.ascontiguousarray(y[:4, :64, :64])
    cfg = TrainConfig(epochs=2, seed=5, base=4, depth=2, batch_size=2)
    a, ha = train_variant("enhanced", cfg, x, y, x[:2], y[:2])
    b, hb = train_variant("enhanced", cfg, x, y, x[:2], y[:2])
    assert ha == hb
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c, _ = train_variant(
        "enhanced", TrainConfig(epochs=2, seed=6, base=4, depth=2, batch_size=2), x, y, x[:2], y[:2]
    )
    assert not torch.equal(c.state_dict()["head.weight"], sa["head.weight"])


def test_blocked_split_with_one_scene_keeps_a_buffer(tmp_path: Path) -> None:
    recs = [TileRecord(f"s_r{r}_c{c}", "", "s", r, c, 1.0, 1.0, 0.1) for r in range(6) for c in range(6)]
    sp = blocked_split(recs, seed=0)
    where = {i: n for n in ("train", "val", "test") for i in getattr(sp, n)}
    pos = {r.id: (r.row, r.col) for r in recs}
    for tid in sp.train:
        rr, cc = pos[tid]
        for other, n in where.items():
            if n != "train":
                orr, occ = pos[other]
                assert max(abs(orr - rr), abs(occ - cc)) > 1  # no train tile touches a val/test tile
    assert sp.buffer_dropped and sp.test and sp.val
    with pytest.raises(TrainingError):
        blocked_split(recs[:2], seed=0)


def test_cli_errors_are_clean(tmp_path: Path) -> None:
    r = CliRunner().invoke(unet_app(), ["train", "unet", str(tmp_path), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "tiles.json" in r.output
    r = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(tmp_path), "--json"])
    assert r.exit_code == 2 and "run.json" in r.output


@pytest.mark.faults
def test_damaged_run_dir_gives_clean_errors(trained: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, run = trained
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "enhanced.pt").unlink()
    r = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(broken), "--json"])
    assert r.exit_code == 2 and "enhanced.pt" in r.output and "retrain" in r.output
    doc = json.loads((broken / "run.json").read_text())
    doc["data_dir"] = str(tmp_path / "moved")
    (broken / "run.json").write_text(json.dumps(doc))
    shutil.copy(run / "enhanced.pt", broken / "enhanced.pt")
    r = CliRunner().invoke(
        unet_app(), ["predict", "unet", str(broken), str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2 and "does not exist" in r.output
    r = CliRunner().invoke(unet_app(), ["evaluate", "unet", str(broken)])
    assert r.exit_code == 2 and "data dir" in r.output
