"""The sensing-side configuration sections: strict, described, and accepted by the processors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from agent.features.settings import StoreConfig
from agent.sensors import gnss, seismic
from agent.sensors.settings import SensorsConfig


def _all_fields_described(model: type[BaseModel]) -> list[str]:
    missing = []
    for name, info in model.model_fields.items():
        if not info.description:
            missing.append(f"{model.__name__}.{name}")
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            missing += _all_fields_described(ann)
    return missing


def test_every_field_has_a_description() -> None:
    assert _all_fields_described(SensorsConfig) == []
    assert _all_fields_described(StoreConfig) == []


def test_sections_build_the_processor_configs() -> None:
    cfg = SensorsConfig.model_validate(
        {"gnss": {"reference": {"lat": 46.0, "lon": 14.5, "h_m": 300.0}, "gate": {"min_carrier": "float"}}}
    )
    g = gnss.GnssConfig.from_mapping(cfg.gnss.processor_mapping())
    assert g.gate.min_carrier == "float" and g.reference.lat == 46.0
    s = seismic.SeismicConfig(**cfg.seismic.processor_kwargs())
    assert s.sensitivity_counts_per_m_s == cfg.seismic.sensitivity_counts_per_m_s
    assert s.pgv_window_s == cfg.seismic.pgv_window_s


@pytest.mark.parametrize(
    "data, match",
    [
        ({"rain": {"mm_per_tipp": 0.2}}, "Extra inputs"),
        ({"rain": {"mm_per_tip": 0}}, "greater than 0"),
        ({"rain": {"frame_period_s": 600, "max_gap_s": 60}}, "max_gap_s"),
        ({"seismic": {"band_hz": [20, 1]}}, "band_hz"),
        ({"seismic": {"sta_s": 20, "lta_s": 10}}, "sta_s"),
        ({"gnss": {"gate": "rtk-superfix"}}, "gate"),
        (
            {
                "ports": [
                    {"name": "a", "path": "/x", "kind": "gnss"},
                    {"name": "a", "path": "/y", "kind": "bridge"},
                ]
            },
            "unique",
        ),
        ({"ports": [{"name": "a b", "path": "/x", "kind": "gnss"}]}, "pattern"),
        ({"ports": [{"name": "a", "path": "/x", "kind": "modem"}]}, "kind"),
    ],
)
def test_bad_sections_are_refused(data: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        SensorsConfig.model_validate(data)


def test_store_section_limits() -> None:
    with pytest.raises(ValidationError, match="synchronous"):
        StoreConfig.model_validate({"synchronous": "OFF"})
    assert StoreConfig().wal and StoreConfig().synchronous == "NORMAL"
