"""`bilstm`: the umbrella command, composed from the three packages.

The runtime's commands (run, eval, info, merge) come from `bilstm.runtime.cli`; `train` and
`export` from `bilstm.models.cli` and `bilstm.export.cli`, imported only when one of them is
invoked, because they load torch. On the runtime-only install those imports fail and the
command says how to install the training extra. This module, not the runtime, is the one
place that knows both sides exist.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from bilstm.runtime.cli import invoke, missing_training_extra, umbrella_app


def _train_app() -> typer.Typer:
    from bilstm.models.cli import app

    return app


def _export_app() -> typer.Typer:
    from bilstm.export.cli import app

    return app


def _tune_app() -> typer.Typer:
    from bilstm.models.tune_cli import app

    return app


def _import_app() -> typer.Typer:
    from bilstm.models.import_cli import app

    return app


def _export_module_app() -> typer.Typer:
    from bilstm.export.module_cli import app

    return app


TRAINING_APPS = {
    "train": _train_app,
    "export": _export_app,
    "export-module": _export_module_app,
    "tune": _tune_app,
    "import": _import_app,
}


def _export_checkpoint(checkpoint: Path, out: Path) -> Any:
    """`bilstm eval CHECKPOINT_DIR`: the checkpoint measured through its own export."""
    from bilstm.export.exporter import export_checkpoint

    return export_checkpoint(checkpoint, out)


def app() -> typer.Typer:
    """The umbrella app as `main` runs it for the runtime's commands (eval takes checkpoint
    folders) and `serve`; `train` and `export` are separate apps, see `TRAINING_APPS`."""
    umbrella = umbrella_app(checkpoint_exporter=_export_checkpoint)
    # The command module imports only typer; FastAPI, uvicorn and the models load when
    # `serve` runs (the serve extra), so `bilstm --help` starts as fast as before.
    from bilstm.runtime.serve.command import serve

    umbrella.command("serve")(serve)
    # Imports only typer; matplotlib loads when a plot is drawn (the plot extra).
    from bilstm.runtime.plots import plot_app

    umbrella.add_typer(plot_app(), name="plot")
    # ORT-format conversion runs on the runtime-only install (onnxruntime ships the converter).
    from bilstm.runtime.convert import convert

    umbrella.command("convert")(convert)
    return umbrella


def main() -> None:
    """Entry point of `bilstm`."""
    argv = sys.argv[1:]
    if argv and argv[0] in TRAINING_APPS:
        # torch and onnx load when the command runs (its --help needs neither): on the
        # runtime-only install either step can find them missing.
        try:
            training_app = TRAINING_APPS[argv[0]]()
            invoke(training_app, argv[1:], f"bilstm {argv[0]}")
        except ImportError as exc:
            try:
                missing_training_extra(argv[0], exc)
            except typer.Exit as done:
                sys.exit(done.exit_code)
    invoke(app())
