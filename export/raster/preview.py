"""PNG previews a person would look at: landslide probability over a hillshade of the DEM."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.raster.terrain import hillshade


def write_preview(
    path: Path, prob: np.ndarray, dem: np.ndarray, title: str, threshold: float, pixel_m: float = 10.0
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shade = hillshade(dem, pixel_m)
    fig, ax = plt.subplots(figsize=(6, 6 * prob.shape[0] / max(prob.shape[1], 1) + 0.6), dpi=100)
    ax.imshow(shade, cmap="gray", vmin=0, vmax=1)
    rgba = plt.get_cmap("YlOrRd")(np.clip(prob, 0, 1))
    rgba[..., 3] = np.clip(prob, 0, 1) * 0.75
    ax.imshow(rgba)
    above = prob >= threshold
    if above.any() and not above.all():
        ax.contour(above, levels=[0.5], colors="cyan", linewidths=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    sm = plt.cm.ScalarMappable(cmap="YlOrRd", norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.02, label="landslide probability")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
