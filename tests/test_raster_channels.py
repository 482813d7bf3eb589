"""7-channel stack building, LSI refresh from live rain, normalisation (agent.features.raster_channels)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import RasterError
from agent.features.lsi import compute_lsi
from agent.features.raster_channels import (
    CHANNELS,
    LSI_INDEX,
    build_stack,
    normalise,
    normalized_difference,
    refresh_lsi,
)


def _static(h: int = 8, w: int = 9) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "smi": rng.uniform(0, 1, (h, w)),
        "ndbi": rng.uniform(-0.5, 0.5, (h, w)),
        "ndvi": rng.uniform(-0.2, 0.9, (h, w)),
        "ndwi": rng.uniform(-0.6, 0.6, (h, w)),
        "slope": rng.uniform(0, 60, (h, w)),
        "dem": rng.uniform(100, 2500, (h, w)),
    }


def test_stack_order_and_lsi_channel() -> None:
    static = _static()
    stack, res = build_stack(static, 12.0, 30.0)
    assert stack.shape == (len(CHANNELS), 8, 9) and stack.dtype == np.float32
    assert CHANNELS == ("smi", "ndbi", "ndvi", "ndwi", "slope", "dem", "lsi")
    for i, name in enumerate(CHANNELS[:6]):
        np.testing.assert_allclose(stack[i], static[name], rtol=1e-6)
    np.testing.assert_allclose(stack[LSI_INDEX], compute_lsi(static, 12.0, 30.0).lsi, rtol=1e-5)
    assert res.nan_pixels == 0


def test_refresh_lsi_follows_live_rain_and_leaves_the_rest() -> None:
    stack, _ = build_stack(_static(), 2.0, 3.0)
    wetter, _ = refresh_lsi(stack, 30.0, 48.0)
    np.testing.assert_array_equal(wetter[:LSI_INDEX], stack[:LSI_INDEX])
    assert (
        np.all(wetter[LSI_INDEX] >= stack[LSI_INDEX]) and wetter[LSI_INDEX].mean() > stack[LSI_INDEX].mean()
    )
    assert stack[LSI_INDEX].mean() == pytest.approx(build_stack(_static(), 2.0, 3.0)[0][LSI_INDEX].mean())


def test_normalise_counts_and_replaces_nonfinite() -> None:
    stack, _ = build_stack(_static(), 5.0, 5.0)
    stack[0, 0, 0] = np.nan
    x, bad = normalise(stack, [0.0] * 7, [2.0] * 7)
    assert bad == 1 and x[0, 0, 0] == 0.0
    assert x[4, 1, 1] == pytest.approx(stack[4, 1, 1] / 2)
    with pytest.raises(RasterError):
        normalise(stack, [0.0] * 6, [1.0] * 6)
    with pytest.raises(RasterError):
        normalise(stack, [0.0] * 7, [0.0] * 7)


def test_normalized_difference_is_nan_safe() -> None:
    out = normalized_difference(np.array([1.0, 0.0, np.nan, 3.0]), np.array([1.0, 0.0, 1.0, 1.0]))
    assert out[0] == 0.0 and np.isnan(out[1]) and np.isnan(out[2]) and out[3] == pytest.approx(0.5)


def test_bad_stacks_are_refused() -> None:
    with pytest.raises(RasterError):
        build_stack({k: v for k, v in _static().items() if k != "dem"}, 1, 1)
    bad = _static()
    bad["dem"] = np.zeros((3, 3))
    with pytest.raises(RasterError):
        build_stack(bad, 1, 1)
    with pytest.raises(RasterError):
        refresh_lsi(np.zeros((6, 4, 4), np.float32), 1, 1)
