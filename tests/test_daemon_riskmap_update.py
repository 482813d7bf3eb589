"""The gateway's spatial source (U-Net over the site raster, LSI from live rain) and A/B bundle updates
handed to a running daemon with `agent bundle install`, against the signed demo bundle and a real broker."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.broker import Broker
from typer.testing import CliRunner

from agent.cli import _register_all, app
from agent.config import config_from_dict
from agent.daemon import Daemon
from agent.errors import RasterError
from agent.inference.manager import ModelManager
from agent.inference.settings import InferenceSettings
from agent.riskmap import RiskMapper, load_site_raster

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "bundles" / "demo"
PUBKEY = REPO / "bundles" / "demo-keys" / "signing.pub"
RASTER = REPO / "bundles" / "demo-site" / "site_raster.npz"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    state = tmp_path_factory.mktemp("models")
    mgr = ModelManager(InferenceSettings(bundle_dir=BUNDLE, public_key=PUBKEY, state_dir=state))
    mgr.start()
    return mgr


def test_risk_map_covers_the_site_and_rain_raises_the_lsi(models: ModelManager) -> None:
    static = load_site_raster(RASTER)
    mapper = RiskMapper(static, models)
    dry = mapper.run(0.0, 0.0, now=1000.0)
    storm = mapper.run(20.0, 48.0, now=2000.0)
    assert dry is not None and storm is not None
    h, w = static["dem"].shape
    assert dry.probability.shape == storm.probability.shape == (h, w)
    assert np.isfinite(storm.probability).all()
    assert storm.probability.min() >= 0.0 and storm.probability.max() <= 1.0
    assert dry.summary["lsi_rainfall_multiplier"] == 0.0 < storm.summary["lsi_rainfall_multiplier"]
    assert storm.summary["lsi_mean"] > dry.summary["lsi_mean"]
    sp = storm.spatial
    assert sp.t == 2000.0 and sp.model_name == "unet" and sp.completeness == 1.0
    above = float((storm.probability >= sp.probability_threshold).mean())
    assert sp.area_fraction_above == pytest.approx(above)
    assert sp.max_probability == pytest.approx(float(storm.probability.max()))
    assert mapper.counters["maps"] == 2


def test_risk_map_refuses_bad_rasters_and_rules_only(tmp_path: Path, models: ModelManager) -> None:
    partial = tmp_path / "partial.npz"
    np.savez(partial, dem=np.zeros((8, 8)), slope=np.zeros((8, 8)))
    with pytest.raises(RasterError, match=r"lacks channel 'smi'.*channel 'lsi'"):
        load_site_raster(partial, channels=["smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi"])
    empty = tmp_path / "empty.npz"
    np.savez(empty, pixel_m=np.float32(10.0))
    with pytest.raises(RasterError, match="no 2-D layers"):
        load_site_raster(empty)
    rules_only = ModelManager(InferenceSettings(bundle_dir=tmp_path / "none", public_key=PUBKEY))
    rules_only.start()
    mapper = RiskMapper(load_site_raster(RASTER), rules_only)
    assert mapper.run(5.0, 5.0, now=0.0) is None
    assert mapper.counters["skipped_no_model"] == 1


def test_risk_map_names_the_channel_the_site_raster_lacks(tmp_path: Path, models: ModelManager) -> None:
    """The demo bundle (no channel list in its meta: the 7-channel LSI stack) against an RGB-only site."""
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, red=np.zeros((64, 64)), green=np.zeros((64, 64)), blue=np.zeros((64, 64)))
    mapper = RiskMapper(load_site_raster(rgb), models)
    assert mapper.run(5.0, 5.0, now=0.0) is None
    assert mapper.counters["skipped_missing_channel"] == 1
    assert "lacks channel 'smi'" in mapper.last_reason and "'ndvi'" in mapper.last_reason
    assert "('nir', 'red')" in mapper.last_reason  # how NDVI could be derived


def _config(tmp_path: Path, broker: Broker) -> dict[str, object]:
    return {
        "daemon": {
            "state_dir": str(tmp_path / "state"),
            "evaluate_interval_s": 0.1,
            "site_raster": str(RASTER),
        },
        "store": {"path": str(tmp_path / "store.sqlite")},
        "inference": {"bundle_dir": str(BUNDLE), "public_key": str(PUBKEY)},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        },
    }


def test_bundle_install_is_staged_and_switched_by_the_running_daemon(
    tmp_path: Path, mosquitto: Broker
) -> None:
    data = _config(tmp_path, mosquitto)
    cfg = config_from_dict(data)
    conf_file = tmp_path / "agent.toml"
    conf_file.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[inference]\n'
        f'bundle_dir = "{BUNDLE}"\npublic_key = "{PUBKEY}"\n'
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert daemon.models.mode == "onnxruntime"
        first_slot = daemon.models.status()["bundle_dir"]
        # a spatial summary is made at the first evaluation (no rain: the LSI is flat)
        deadline = time.monotonic() + 20
        while daemon.riskmap.spatial is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert daemon.riskmap.spatial is not None and daemon.riskmapper is not None
        _register_all()
        tampered = tmp_path / "tampered"
        shutil.copytree(BUNDLE, tampered)
        (tampered / "displacement.fp32.onnx").write_bytes(b"\0" * 64)
        runner = CliRunner()
        bad = runner.invoke(app, ["bundle", "install", str(tampered), "--config", str(conf_file)])
        assert bad.exit_code == 1 and "NOT INSTALLED" in bad.output
        assert not (tmp_path / "state" / "bundles" / "inbox").exists() or not any(
            (tmp_path / "state" / "bundles" / "inbox").iterdir()
        )
        good = runner.invoke(app, ["bundle", "install", str(BUNDLE), "--config", str(conf_file)])
        assert good.exit_code == 0, good.output
        deadline = time.monotonic() + 30
        while daemon.models.status()["update"].get("state") in (None, "none", "staged") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        status = daemon.models.status()
        assert status["update"]["state"] in ("probation", "committed"), status["update"]
        assert status["bundle_dir"] != first_slot  # now running from the other slot
        assert not any((tmp_path / "state" / "bundles" / "inbox").iterdir())
    finally:
        daemon.stop()
