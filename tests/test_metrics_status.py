"""Prometheus metrics from the daemon's status: the exposition parses and carries levels and counters."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
from helpers.demo_state import demo_state

from agent.config import WebSettings
from agent.metrics import exposition, families_from_status, make_registry, update_from_status
from agent.web.server import StatusApp, StatusServer


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _real_status() -> dict[str, Any]:
    status: dict[str, Any] = json.loads((demo_state().paths.state_dir / "status.json").read_text())
    return status


def test_exposition_from_real_status_parses() -> None:
    status = _real_status()
    m = make_registry()
    update_from_status(m, status, written_at=None)
    got = _samples(exposition(m).decode())
    assert got[("lews_status_available", ())] == 1.0
    assert got[("lews_published_level", ())] == float(status["published_level"])
    for name, src in status["sources"].items():
        assert got[("lews_source_level", (("source", name),))] == float(src["level"])
    ob = status["publish"]["outbox"]
    assert got[("lews_outbox_depth", ())] == float(ob["depth"])
    assert got[("lews_outbox_enqueued_total", ())] == float(ob["enqueued"]) > 0
    assert got[("lews_daemon_events_total", (("event", "evaluations"),))] == status["daemon"]["evaluations"]
    for port, p in status["pipeline"]["ports"].items():
        assert got[("lews_port_bytes_total", (("port", port),))] == float(p["bytes"]) > 0
    assert got[("lews_frames_total", (("port", "gnss"),))] > 0
    assert got[("lews_frames_total", (("port", "bridge"),))] > 0
    gnss_samples = status["pipeline"]["pipeline"]["samples.gnss.e_mm"]
    assert got[("lews_pipeline_samples_total", (("channel", "gnss.e_mm"),))] == gnss_samples
    assert (
        got[
            (
                "lews_inference_info",
                (("bundle_id", "demo-synthetic"), ("mode", "onnxruntime"), ("precision", "int8")),
            )
        ]
        == 1.0
    )
    assert got[("lews_inference_warmup_seconds", (("model", "displacement"),))] > 0
    assert ("lews_status_age_seconds", ()) not in got  # unknown write time: not invented


def test_metrics_endpoint_over_http(tmp_path: Path) -> None:
    paths = demo_state().paths
    srv = StatusServer(StatusApp(paths, WebSettings(port=0))).start()
    try:
        with urllib.request.urlopen(srv.url + "metrics", timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            got = _samples(resp.read().decode())
    finally:
        srv.stop()
    status = _real_status()
    assert got[("lews_published_level", ())] == float(status["published_level"])
    assert 0 <= got[("lews_status_age_seconds", ())] < 3600  # written by the demo minutes ago at most
    assert got[("lews_loop_runs_total", (("loop", "evaluate"),))] == status["loops"]["evaluate"]["runs"]


@pytest.mark.faults
def test_missing_or_odd_status() -> None:
    fams = families_from_status(None)
    assert [(f.name, f.samples[0].value) for f in fams] == [("lews_status_available", 0.0)]
    odd = {
        "published_level": None,
        "sources": {"wire": {"level": "high"}, "rain": {"level": 2, "fault": True}},
        "publish": {"outbox": {"depth": float("nan"), "dropped": {"full": 3}}},
        "pipeline": {"decoders": {"bridge": {"frames": {"frames_ok": 10, "errors": {"crc": 2}}}, "x": 5}},
        "daemon": "not a mapping",
    }
    m = make_registry()
    update_from_status(m, odd)
    got = _samples(exposition(m).decode())
    assert got[("lews_published_level", ())] == -1.0
    assert ("lews_source_level", (("source", "wire"),)) not in got  # not a number: left out, not guessed
    assert got[("lews_source_level", (("source", "rain"),))] == 2.0
    assert got[("lews_source_fault", (("source", "rain"),))] == 1.0
    assert ("lews_outbox_depth", ()) not in got
    assert got[("lews_outbox_dropped_total", (("reason", "full"),))] == 3.0
    assert got[("lews_frame_errors_total", (("kind", "crc"), ("port", "bridge")))] == 2.0
