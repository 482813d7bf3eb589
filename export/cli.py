"""The `agent-export` command line: offline data, training, evaluation, export and bundles."""

from __future__ import annotations

import importlib
import sys

import typer

from agent.logsetup import setup_logging
from export.groups import Groups


def _typer(name: str, help_: str) -> typer.Typer:
    return typer.Typer(name=name, help=help_, no_args_is_help=True, add_completion=False)


app = typer.Typer(
    name="agent-export",
    help="Offline toolchain of lews-agent: import data, train and evaluate the networks, "
    "export ONNX FP32 + INT8, build TensorRT engines and signed model bundles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_data = _typer("data", "Import real site data or generate labelled-synthetic data.")
GROUPS = Groups(
    app=app,
    data_import=_typer("import", "Import public data formats into the site-series CSV."),
    data_synth=_typer("synth", "Generate SYNTHETIC data (labelled as such) for tests and demos."),
    train=_typer("train", "Train a network and its reference models on the chronological first part."),
    evaluate=_typer("evaluate", "Evaluate a run on its held-back part; every model side by side."),
    predict=_typer("predict", "Run a trained network on new inputs."),
)
_data.add_typer(GROUPS.data_import)
_data.add_typer(GROUPS.data_synth)
app.add_typer(_data)
app.add_typer(GROUPS.train)
app.add_typer(GROUPS.evaluate)
app.add_typer(GROUPS.predict)

# Each module defines `register(groups: Groups) -> None`.
_REGISTRARS = (
    "export.displacement.cli",  # data import ..., data synth series, train/evaluate displacement, finetune
    "export.unet.cli",  # data synth scenes, train/evaluate/predict unet
    "export.bundle_cli",  # keygen, bundle, engine
    "export.rain.cli",  # data import rain-catalogue, calibrate rain, report rain
)


# The toolchain needs Python 3.11+; only `engine` (torch-free, agent/inference/trt_build.py) also runs
# on the gateway's Python 3.10 (JetPack 6), where the other commands stop with this message.
TOOLCHAIN_PYTHON = (3, 11)
GATEWAY_COMMANDS = ("engine",)


def _register_all(registrars: tuple[str, ...] = _REGISTRARS) -> None:
    for name in registrars:
        importlib.import_module(name).register(GROUPS)


def main() -> None:
    setup_logging()
    if sys.version_info < TOOLCHAIN_PYTHON:
        if sys.argv[1:2] and sys.argv[1] in GATEWAY_COMMANDS:
            _register_all(("export.bundle_cli",))
            app()
            return
        typer.echo(
            f"error: agent-export (training, quantization, bundles) needs Python 3.11 or 3.12; this is "
            f"{sys.version.split()[0]}. On a gateway only `agent-export engine` runs on 3.10 "
            "(fix: run the toolchain from a Python 3.11 venv: `make venv`; on the gateway use `agent`)",
            err=True,
        )
        raise SystemExit(2)
    _register_all()
    app()


if __name__ == "__main__":
    main()
