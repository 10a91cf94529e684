"""`bilstm import keras MODEL.keras OUT_CHECKPOINT`: models trained elsewhere as checkpoints.

Loaded by the `bilstm` umbrella (`TRAINING_APPS["import"]`); imports only typer until a
command runs, so `bilstm import --help` needs neither torch nor keras.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def main() -> None:
    """Import a model trained with another framework as a bilstm checkpoint, proven equal to
    it on ragged batches; `bilstm export` then writes its ONNX file."""


@app.command()
def keras(
    model: Annotated[Path, typer.Argument(help="Keras 3 model file (.keras).")],
    out: Annotated[Path, typer.Argument(help="Checkpoint folder to write.")],
    vocab: Annotated[
        Path | None,
        typer.Option(
            help="Vocabulary: one token per line, line N = Embedding row N - 1 (line 1 is "
            "padding, row 0).",
        ),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Labels: one per line, line N = output N - 1 (default 0, 1, ...). A "
            "Dense(1, sigmoid) model has two: the 0 class, then the 1 class.",
        ),
    ] = None,
    oov_token: Annotated[
        str,
        typer.Option(help="The vocabulary's out-of-vocabulary token (becomes <unk>)."),
    ] = "[UNK]",
    lowercase: Annotated[
        bool, typer.Option(help="Lower-case text before the vocabulary lookup.")
    ] = True,
    pattern: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer regular expression (default: bilstm's word pattern for "
            "classifiers, whitespace for taggers).",
        ),
    ] = None,
    max_length: Annotated[int, typer.Option(min=1, help="Tokens kept per text.")] = 256,
    examples: Annotated[
        Path | None,
        typer.Option(
            help="Texts, one per line: checked for parity now and kept for bilstm export's "
            "own check.",
        ),
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(help="Max difference from Keras' predict, times (1 + |Keras value|)."),
    ] = 1e-5,
    force: Annotated[
        bool, typer.Option("--force", help="Replace OUT if it holds a checkpoint.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and logs.")] = False,
) -> None:
    """Convert a Keras Embedding -> Bidirectional(LSTM/GRU) -> Dense model to a checkpoint.

    Keras runs on the torch backend (KERAS_BACKEND=torch unless you set another). Every
    import compares Keras' predict with the converted model on ragged, masked batches and
    writes OUT only when they agree.
    """
    from bilstm.runtime.cli import user_errors

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s: %(message)s",
    )
    with user_errors(debug):
        from bilstm.models.keras_import import import_keras

        report = import_keras(
            model,
            out,
            vocab=vocab,
            labels=labels,
            oov_token=oov_token,
            lowercase=lowercase,
            pattern=pattern,
            max_length=max_length,
            examples=examples,
            tolerance=tolerance,
            force=force,
        )
    cfg = report.config
    for case in report.parity.cases:
        typer.echo(
            f"keras parity {case.case:<30} {case.output:<13} max abs {case.max_abs:.2e}  "
            f"max rel {case.max_rel:.2e}",
            err=True,
        )
    if report.dropped_rows:
        typer.echo(
            f"note: the Embedding has {report.dropped_rows} rows beyond the vocabulary file; "
            "no token reaches them, so they are left out",
            err=True,
        )
    if report.capitalised:
        typer.echo(
            f"warning: {report.capitalised} vocabulary tokens have capitals but text is "
            "lower-cased, so they never match; pass --no-lowercase if the Keras pipeline "
            "kept case",
            err=True,
        )
    typer.echo(
        f"wrote {report.out}: {report.task}, {cfg.num_layers} x bidirectional {cfg.cell} "
        f"{cfg.hidden_size} (merge {cfg.merge}), vocabulary {report.vocabulary}, "
        f"{cfg.num_labels} outputs; Keras parity max abs {report.parity.max_abs:.2e}. "
        f"Next: bilstm export {report.out} MODEL.onnx",
        err=True,
    )
