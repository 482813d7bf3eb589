"""Channel stacks as data: named channels, derived channels computed in one place (agent.features.channels),
the LSI stack as the default for meta without a channel list, and clear errors naming what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import RasterError
from agent.features.channels import DERIVED, assemble, missing_layers, slope_deg
from agent.features.raster_channels import (
    CHANNELS,
    build_channel_stack,
    build_stack,
    model_channels,
    normalise,
)


def _rgb(h: int = 6, w: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {c: rng.uniform(0.05, 1.0, (h, w)).astype(np.float32) for c in ("red", "green", "blue")}


def test_derived_channels_follow_their_formulas() -> None:
    layers = _rgb()
    stack = assemble(layers, ["grvi", "red", "brightness"])
    g, r, b = layers["green"], layers["red"], layers["blue"]
    np.testing.assert_allclose(stack[0], (g - r) / (g + r), rtol=1e-5)
    np.testing.assert_array_equal(stack[1], r)
    np.testing.assert_allclose(stack[2], (r + g + b) / 3, rtol=1e-6)
    nir = np.full_like(r, 0.8)
    ndvi = assemble({**layers, "nir": nir}, ["ndvi"])[0]
    np.testing.assert_allclose(ndvi, (nir - r) / (nir + r), rtol=1e-5)
    # slope from a plane rising 1 m per 10 m pixel: atan(0.1) everywhere
    dem = np.tile(np.arange(8, dtype=np.float32), (5, 1))
    np.testing.assert_allclose(assemble({"dem": dem}, ["slope"], pixel_m=10.0)[0], np.degrees(np.arctan(0.1)))
    np.testing.assert_array_equal(slope_deg(dem, 10.0), assemble({"dem": dem}, ["slope"], pixel_m=10.0)[0])
    assert set(DERIVED) >= {"grvi", "ndvi", "slope"}


def test_missing_channels_are_named_with_how_to_get_them() -> None:
    assert missing_layers(["red", "green", "blue"], ["red", "grvi"]) == {}
    assert missing_layers(["red", "green"], ["ndvi", "dem"]) == {"ndvi": ["nir"], "dem": ["dem"]}
    lsi = missing_layers(["dem", "smi", "ndbi", "ndwi", "red"], list(CHANNELS))
    assert lsi["ndvi"] == ["nir"] and "nir" in lsi["lsi"] and "slope" not in lsi  # slope derives from dem
    with pytest.raises(RasterError, match=r"lacks channel 'ndvi' \(or the layers \('nir', 'red'\)"):
        assemble(_rgb(), ["red", "ndvi"])
    with pytest.raises(RasterError, match="share one shape"):
        assemble({"red": np.zeros((3, 3)), "green": np.zeros((4, 3))}, ["grvi"])


def test_model_channels_default_to_the_lsi_stack_and_stacks_build_by_name() -> None:
    assert model_channels({}) == list(CHANNELS)  # a manifest without a channel list: 7-channel LSI stack
    assert model_channels({"channels": ["red", "green", "blue", "grvi"]}) == ["red", "green", "blue", "grvi"]
    stack, lsi = build_channel_stack(_rgb(), ["red", "green", "blue", "grvi"], 5.0, 5.0)
    assert stack.shape == (4, 6, 7) and lsi is None
    rng = np.random.default_rng(2)
    static = {
        "smi": rng.uniform(0, 1, (6, 7)),
        "ndbi": rng.uniform(-0.5, 0.5, (6, 7)),
        "ndvi": rng.uniform(-0.2, 0.9, (6, 7)),
        "ndwi": rng.uniform(-0.6, 0.6, (6, 7)),
        "dem": rng.uniform(100, 2500, (6, 7)),
    }
    # slope derived from the DEM, then the LSI: equals build_stack with the slope given explicitly
    named, res = build_channel_stack(static, ["dem", "lsi", "slope"], 12.0, 30.0, pixel_m=10.0)
    full, _ = build_stack({**static, "slope": slope_deg(static["dem"], 10.0)}, 12.0, 30.0)
    assert res is not None
    np.testing.assert_allclose(named[1], full[6], rtol=1e-5)
    np.testing.assert_allclose(named[2], full[4], rtol=1e-6)
    x, bad = normalise(stack, [0.5] * 4, [0.2] * 4)
    assert x.shape == stack.shape and bad == 0
    with pytest.raises(RasterError, match="normalisation needs 4 means"):
        normalise(stack, [0.5] * 7, [0.2] * 7)
