"""Open any training run for export: ``run.json``'s ``kind`` -> the loader of the package that trained it.

The run contract (:class:`~export.runs.LoadedRun`, ``read_run_json``) is the leaf module
``export/runs.py``; the loaders import it and this table imports the loaders, so nothing imports back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from agent.errors import TrainingError
from export.displacement.run import load_displacement_run
from export.runs import LoadedRun, read_run_json
from export.unet.run import load_unet_run

LOADERS: Mapping[str, Callable[[Path], LoadedRun]] = {
    "displacement": load_displacement_run,
    "unet": load_unet_run,
}


def load_run(run_dir: Path) -> LoadedRun:
    """The run in ``run_dir`` with its networks ready to export; an unknown ``kind`` is a TrainingError."""
    kind = read_run_json(run_dir).get("kind")
    loader = LOADERS.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise TrainingError(
            f"{run_dir}/run.json has unknown kind {kind!r}",
            fix=f"expected one of {sorted(LOADERS)}; retrain with this version of agent-export",
        )
    return loader(Path(run_dir))
