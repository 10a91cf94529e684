"""`bilstm train <task>`: the training commands (loaded by the `bilstm` umbrella)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from bilstm.models.config import CELLS, MERGES, POOLINGS, TrainConfig
from bilstm.runtime.errors import BiLSTMError
from bilstm.runtime.tokenizer import DEFAULT_MAX_LENGTH, TokenizerConfig

app = typer.Typer(
    help="Train a BiLSTM model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@contextlib.contextmanager
def _user_errors(debug: bool) -> Iterator[None]:
    try:
        yield
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(
            f"must be one of {', '.join(allowed)}; got {value!r}", param_hint=name
        )
    return value


ExistingFile = Annotated[Path, typer.Option(exists=True, dir_okay=False, readable=True)]


@app.command("classify")
def classify(
    data: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="Training data: label<TAB>text TSV or JSONL."
        ),
    ],
    dev: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Dev data (same format) for metrics and early stopping.",
        ),
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    embedding_dim: int = 128,
    hidden_size: int = 128,
    layers: Annotated[int, typer.Option(min=1)] = 1,
    cell: Annotated[str, typer.Option(help=f"{'|'.join(CELLS)}")] = "lstm",
    merge: Annotated[str, typer.Option(help=f"{'|'.join(MERGES)}")] = "concat",
    pooling: Annotated[str, typer.Option(help=f"{'|'.join(POOLINGS)}")] = "max",
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.3,
    embedding_dropout: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.1,
    max_length: Annotated[int, typer.Option(min=1, help="Tokens kept per text.")] = (
        DEFAULT_MAX_LENGTH
    ),
    lowercase: Annotated[bool, typer.Option(help="Lower-case text before tokenising.")] = True,
    min_freq: Annotated[int, typer.Option(min=1)] = 1,
    max_vocab: Annotated[int | None, typer.Option(min=3)] = None,
    class_weights: bool = False,
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    lr: Annotated[float, typer.Option(min=0.0)] = 2e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.0,
    clip_norm: Annotated[float, typer.Option(min=0.0)] = 5.0,
    patience: Annotated[int, typer.Option(min=1)] = 3,
    seed: int = 13,
    device: str = "cpu",
    threads: Annotated[int | None, typer.Option(min=1, help="torch intra-op threads.")] = None,
    skip_bad_lines: bool = False,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Train a text classifier (embedding -> BiLSTM -> pooling -> dense -> softmax)."""
    import torch

    from bilstm.models.training import train_classifier
    from bilstm.runtime.datasets import read_classification

    _choice(cell, CELLS, "--cell")
    _choice(merge, MERGES, "--merge")
    _choice(pooling, POOLINGS, "--pooling")
    if threads:
        torch.set_num_threads(threads)
    with _user_errors(debug):
        train_items = read_classification(data, skip_bad_lines)
        dev_items = read_classification(dev, skip_bad_lines)
        train_classifier(
            train_items,
            dev_items,
            out,
            model_cfg={
                "embedding_dim": embedding_dim,
                "hidden_size": hidden_size,
                "num_layers": layers,
                "cell": cell,
                "merge": merge,
                "pooling": pooling,
                "dropout": dropout,
                "embedding_dropout": embedding_dropout,
            },
            train_cfg=TrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                lr=lr,
                weight_decay=weight_decay,
                clip_norm=clip_norm,
                patience=patience,
                seed=seed,
                min_freq=min_freq,
                max_vocab=max_vocab,
                class_weights=class_weights,
                device=device,
            ),
            tokenizer_cfg=TokenizerConfig(lowercase=lowercase, max_length=max_length),
            data_info={"train": data.name, "dev": dev.name, "argv": sys.argv[1:]},
        )


@app.callback()
def _main() -> None:
    """Train a BiLSTM model; each task is a subcommand."""
