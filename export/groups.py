"""The sub-command groups of `agent-export` that several areas add their commands to.

``export/cli.py`` builds them and calls each area's ``register(groups)``; the areas import only this
leaf module, so no area imports the command line that loads it.
"""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass(frozen=True)
class Groups:
    """Sub-command groups that several areas add commands to."""

    app: typer.Typer
    data_import: typer.Typer  # agent-export data import ...
    data_synth: typer.Typer  # agent-export data synth ...
    train: typer.Typer  # agent-export train displacement|unet
    evaluate: typer.Typer  # agent-export evaluate displacement|unet
    predict: typer.Typer  # agent-export predict unet
