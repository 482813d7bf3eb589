"""The [warning] config section: unknown keys rejected, every field described, ordering checks,
per-site overrides."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from agent.compat import tomllib
from agent.errors import ConfigError
from agent.warning.engine import WarningEngine
from agent.warning.inputs import Snapshot, WireInput, WireState
from agent.warning.levels import Level
from agent.warning.settings import WarningSettings

T0 = 1_750_000_000.0


def _all_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    out = [model]
    for f in model.model_fields.values():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _all_models(ann)
    return out


def test_every_field_is_described_and_extra_is_forbidden() -> None:
    for model in _all_models(WarningSettings):
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, f in model.model_fields.items():
            assert f.description, f"{model.__name__}.{name} has no description"


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        WarningSettings.model_validate({"velocity": {"mm_per_dya": {}}})
    with pytest.raises(ValidationError, match="extra"):
        WarningSettings.model_validate({"wires": {}})


def test_threshold_order_is_checked() -> None:
    with pytest.raises(ValidationError, match="must increase"):
        WarningSettings.model_validate(
            {"velocity": {"mm_per_day": {"advisory": 5, "watch": 1, "warning": 20}}}
        )
    with pytest.raises(ValidationError, match="must decrease"):
        WarningSettings.model_validate(
            {"inverse_velocity": {"time_to_failure_s": {"advisory": 1, "watch": 100, "warning": None}}}
        )
    with pytest.raises(ValidationError, match="> 0"):
        WarningSettings.model_validate(
            {"seismic": {"pgv_mm_s": {"advisory": 0, "watch": None, "warning": None}}}
        )
    with pytest.raises(ValidationError, match=r"\(0, 1\]"):
        probs = {"advisory": 2, "watch": None, "warning": None}
        WarningSettings.model_validate({"forecast": {"exceedance_probability": probs}})
    with pytest.raises(ValidationError):
        WarningSettings.model_validate({"wire": {"fault_level": 0}})


def test_toml_section_with_per_site_override() -> None:
    text = """
[alert]
hysteresis_band = 0.1

[sites.urbas.wire]
fault_level = 3

[sites.urbas.velocity.mm_per_day]
advisory = 0.5
watch = 2.0
warning = 10.0
"""
    cfg = WarningSettings.model_validate(tomllib.loads(text))
    urbas = cfg.for_site("urbas")
    assert urbas.wire.fault_level == 3 and urbas.velocity.mm_per_day.advisory == 0.5
    assert urbas.alert.hysteresis_band == 0.1  # inherited
    assert cfg.for_site("elsewhere") is cfg
    eng = WarningEngine(cfg, "urbas")
    r = eng.evaluate(Snapshot("urbas", wire=WireInput(WireState.SHORT, T0, T0)), T0)
    assert r.published_level == Level.WARNING and r.explanation.faults == ["wire"]


def test_bad_site_override_is_a_config_error() -> None:
    cfg = WarningSettings.model_validate({"sites": {"urbas": {"velocity": {"typo": 1}}}})
    with pytest.raises(ConfigError, match=r"\[warning.sites.urbas\]") as exc:
        cfg.for_site("urbas")
    assert exc.value.fix


def test_off_disables_a_level_and_partial_tables_are_rejected() -> None:
    text = """
[seismic.pgv_mm_s]
advisory = 20.0
watch = "off"
warning = 150.0
"""
    cfg = WarningSettings.model_validate(tomllib.loads(text))
    assert cfg.seismic.pgv_mm_s.as_tuple() == (20.0, None, 150.0)
    again = WarningSettings.model_validate(cfg.model_dump())  # what a TOML writer would emit
    assert again == cfg
    with pytest.raises(ValidationError, match="Field required"):
        WarningSettings.model_validate(tomllib.loads("[velocity.mm_per_day]\nadvisory = 0.5\n"))
    with pytest.raises(ValidationError):
        WarningSettings.model_validate(
            tomllib.loads('[velocity.mm_per_day]\nadvisory = "of"\nwatch = 1\nwarning = 2\n')
        )
