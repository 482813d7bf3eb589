"""The `agent-export` groups with only the U-Net commands registered, for CliRunner tests (needs torch)."""

from __future__ import annotations

import typer

from export.groups import Groups
from export.unet.cli import register


def unet_app() -> typer.Typer:
    def t(name: str) -> typer.Typer:
        return typer.Typer(name=name, no_args_is_help=True)

    app, data = t("agent-export"), t("data")
    g = Groups(
        app=app,
        data_import=t("import"),
        data_synth=t("synth"),
        train=t("train"),
        evaluate=t("evaluate"),
        predict=t("predict"),
    )
    data.add_typer(g.data_import)
    data.add_typer(g.data_synth)
    for sub in (data, g.train, g.evaluate, g.predict):
        app.add_typer(sub)
    register(g)
    return app
