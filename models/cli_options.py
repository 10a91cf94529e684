"""The options of `bilstm train`: flag, type, default and help of each, as a table.

`cli.train` takes them as keyword arguments; `with_parameters` gives it the signature that
typer reads its options from, so that the 40 declarations are data here rather than one
very long function signature. The order is the order of `bilstm train --help`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from bilstm.core.tokenizer import DEFAULT_MAX_LENGTH
from bilstm.models.tasks import TASKS

Task = Enum("Task", {name: name for name in TASKS}, type=str)  # type: ignore[misc]
"""The choices of the TASK argument: the registry's tasks."""


class Cell(str, Enum):
    lstm = "lstm"
    gru = "gru"


class Merge(str, Enum):
    concat = "concat"
    sum = "sum"
    mul = "mul"
    ave = "ave"


class Pooling(str, Enum):
    max = "max"
    mean = "mean"
    last = "last"
    attention = "attention"


MODEL = "Model"
TRAINING = "Training"
TEXT = "Text tasks"
TAGGING = "tag"
SERIES = "forecast"
CLASSIFY = "classify: distillation and warm start"


def _param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


PARAMETERS = [
    _param(
        "task",
        Annotated[Task, typer.Argument(help=" | ".join(TASKS))],
    ),
    _param(
        "data",
        Annotated[
            Path,
            typer.Option(
                exists=True,
                dir_okay=False,
                help=(
                    "Training data. classify: label<TAB>text TSV or JSONL {text,label}; "
                    "tag: CoNLL-U or token<TAB>tag with blank lines between sentences; "
                    "forecast: CSV with a header; cloze: plain text, one sentence per line."
                ),
            ),
        ],
    ),
    _param(
        "dev",
        Annotated[
            Path,
            typer.Option(
                exists=True, dir_okay=False, help="Dev data (same format): metrics, early stopping."
            ),
        ],
    ),
    _param(
        "out",
        Annotated[
            Path,
            typer.Option(
                help=(
                    "Checkpoint folder to write: new or empty (an existing checkpoint needs "
                    "--resume or --force; a file or a folder of other files is refused)."
                )
            ),
        ],
    ),
    _param(
        "config",
        Annotated[
            Path | None,
            typer.Option(exists=True, dir_okay=False, help="JSON file of option values."),
        ],
        None,
    ),
    # model
    _param(
        "embedding_dim",
        Annotated[int, typer.Option(min=1, rich_help_panel=MODEL, help="Word embedding size.")],
        128,
    ),
    _param(
        "hidden_size",
        Annotated[
            int, typer.Option(min=1, rich_help_panel=MODEL, help="LSTM/GRU units per direction.")
        ],
        128,
    ),
    _param(
        "layers",
        Annotated[
            int, typer.Option(min=1, rich_help_panel=MODEL, help="Stacked bidirectional layers.")
        ],
        1,
    ),
    _param(
        "cell",
        Annotated[Cell, typer.Option(rich_help_panel=MODEL, help="Recurrent cell type.")],
        Cell.lstm,
    ),
    _param(
        "merge",
        Annotated[
            Merge, typer.Option(rich_help_panel=MODEL, help="How the two directions combine.")
        ],
        Merge.concat,
    ),
    _param(
        "pooling",
        Annotated[Pooling, typer.Option(rich_help_panel=MODEL, help="classify only.")],
        Pooling.max,
    ),
    _param(
        "proj_size",
        Annotated[
            int,
            typer.Option(
                min=0,
                rich_help_panel=MODEL,
                help="LSTM projections: each direction's output projected to this size.",
            ),
        ],
        0,
    ),
    _param(
        "dropout",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                max=0.99,
                rich_help_panel=MODEL,
                help="Dropout between layers and before the output layer.",
            ),
        ],
        0.3,
    ),
    _param(
        "embedding_dropout",
        Annotated[
            float,
            typer.Option(
                min=0.0, max=0.99, rich_help_panel=MODEL, help="Spatial dropout on embeddings."
            ),
        ],
        0.1,
    ),
    # text
    _param(
        "max_length",
        Annotated[int, typer.Option(min=1, rich_help_panel=TEXT, help="Tokens kept per text.")],
        DEFAULT_MAX_LENGTH,
    ),
    _param(
        "lowercase",
        Annotated[
            bool,
            typer.Option(
                rich_help_panel=TEXT, help="Lower-case words before the vocabulary lookup."
            ),
        ],
        True,
    ),
    _param(
        "min_freq",
        Annotated[
            int,
            typer.Option(
                min=1, rich_help_panel=TEXT, help="Words seen fewer times in training become <unk>."
            ),
        ],
        1,
    ),
    _param(
        "max_vocab",
        Annotated[
            int | None,
            typer.Option(
                min=4,
                rich_help_panel=TEXT,
                help="Keep at most this many words (most frequent first).",
            ),
        ],
        None,
    ),
    _param(
        "class_weights",
        Annotated[bool, typer.Option(rich_help_panel=TEXT, help="classify: weight rare classes.")],
        False,
    ),
    _param(
        "tag_column",
        Annotated[
            str, typer.Option(rich_help_panel=TAGGING, help="upos, xpos or a column number.")
        ],
        "upos",
    ),
    _param(
        "char_features",
        Annotated[bool, typer.Option(rich_help_panel=TAGGING, help="Character CNN word features.")],
        True,
    ),
    _param(
        "word_dropout",
        Annotated[
            float,
            typer.Option(
                min=0.0, max=0.5, rich_help_panel=TAGGING, help="Train <unk> by dropping words."
            ),
        ],
        0.0,
    ),
    # forecast
    _param(
        "target",
        Annotated[
            str | None,
            typer.Option(
                rich_help_panel=SERIES, help="CSV column to forecast (required for a new run)."
            ),
        ],
        None,
    ),
    _param(
        "features",
        Annotated[
            str | None,
            typer.Option(
                rich_help_panel=SERIES,
                help=(
                    "Comma-separated. Default: every other numeric column except row-index-like "
                    "ones (named index/id/row/step..., or integers counting up by a constant "
                    "step), which are reported on stderr; name them here to use them."
                ),
            ),
        ],
        None,
    ),
    _param(
        "window",
        Annotated[
            int,
            typer.Option(
                min=1, rich_help_panel=SERIES, help="Rows of history the model reads per forecast."
            ),
        ],
        48,
    ),
    _param(
        "horizon",
        Annotated[
            int,
            typer.Option(min=1, rich_help_panel=SERIES, help="Steps forecast after each window."),
        ],
        1,
    ),
    _param(
        "season",
        Annotated[
            int | None,
            typer.Option(
                min=1, rich_help_panel=SERIES, help="Season length for the naive baseline."
            ),
        ],
        None,
    ),
    # training
    _param(
        "epochs",
        Annotated[
            int,
            typer.Option(
                min=1, rich_help_panel=TRAINING, help="Most passes over the training data."
            ),
        ],
        20,
    ),
    _param(
        "batch_size",
        Annotated[
            int, typer.Option(min=1, rich_help_panel=TRAINING, help="Examples per optimiser step.")
        ],
        128,
    ),
    _param(
        "lr",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                rich_help_panel=TRAINING,
                help="Adam learning rate (halved on a dev plateau).",
            ),
        ],
        2e-3,
    ),
    _param(
        "weight_decay",
        Annotated[
            float, typer.Option(min=0.0, rich_help_panel=TRAINING, help="Adam weight decay (L2).")
        ],
        0.0,
    ),
    _param(
        "clip_norm",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                rich_help_panel=TRAINING,
                help="Clip the gradient norm to this (0: no clipping).",
            ),
        ],
        5.0,
    ),
    _param(
        "patience",
        Annotated[
            int,
            typer.Option(
                min=1,
                rich_help_panel=TRAINING,
                help="Stop after this many epochs without a better dev metric.",
            ),
        ],
        3,
    ),
    _param(
        "seed",
        Annotated[
            int,
            typer.Option(
                rich_help_panel=TRAINING,
                help="Random seed (same seed, data and options: same model).",
            ),
        ],
        13,
    ),
    _param(
        "device",
        Annotated[str, typer.Option(rich_help_panel=TRAINING, help="cpu, cuda or cuda:N")],
        "cpu",
    ),
    _param(
        "threads",
        Annotated[
            int | None,
            typer.Option(min=1, rich_help_panel=TRAINING, help="torch intra-op threads."),
        ],
        None,
    ),
    _param(
        "skip_bad_lines",
        Annotated[
            bool,
            typer.Option(
                rich_help_panel=TRAINING,
                help="Skip malformed text lines (counted) instead of stopping.",
            ),
        ],
        False,
    ),
    _param(
        "resume",
        Annotated[
            bool,
            typer.Option(
                rich_help_panel=TRAINING,
                help="Continue the run saved in --out (weights, optimiser, epoch).",
            ),
        ],
        False,
    ),
    _param(
        "force",
        Annotated[
            bool,
            typer.Option(
                "--force",
                rich_help_panel=TRAINING,
                help="Replace the checkpoint already in --out (files of your own there are kept).",
            ),
        ],
        False,
    ),
    _param(
        "vectors",
        Annotated[
            Path | None,
            typer.Option(
                exists=True,
                dir_okay=False,
                rich_help_panel=TEXT,
                help="Pretrained word vectors, word2vec/GloVe text format.",
            ),
        ],
        None,
    ),
    _param(
        "teacher",
        Annotated[
            list[Path] | None,
            typer.Option(
                exists=True,
                file_okay=False,
                rich_help_panel=CLASSIFY,
                help=(
                    "Checkpoint folder of a trained classifier (same labels): the student also "
                    "learns its temperature-softened outputs (knowledge distillation). Repeat "
                    "for an ensemble: the student learns the mean of the teachers' softened "
                    "probabilities."
                ),
            ),
        ],
        None,
    ),
    _param(
        "distill_temperature",
        Annotated[
            float,
            typer.Option(
                min=0.05,
                max=100.0,
                rich_help_panel=CLASSIFY,
                help="Softmax temperature T of the soft targets (with --teacher).",
            ),
        ],
        2.0,
    ),
    _param(
        "distill_weight",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                max=1.0,
                rich_help_panel=CLASSIFY,
                help=(
                    "Share a of the soft-target loss (with --teacher): "
                    "(1-a) * cross-entropy + a * T^2 * KL(teacher || student)."
                ),
            ),
        ],
        0.5,
    ),
    _param(
        "distill_augment",
        Annotated[
            int,
            typer.Option(
                metavar="N",
                rich_help_panel=CLASSIFY,
                help=(
                    "With --teacher: also make N synthetic copies of each training text "
                    "(tokens masked, swapped, cut to an n-gram; Tang et al. 2019) for the "
                    "teachers to label once; the student learns their soft targets. 0 to 100; "
                    "teacher scoring, memory and each epoch grow N+1 times."
                ),
            ),
        ],
        0,
    ),
    _param(
        "augment_mask",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                max=1.0,
                rich_help_panel=CLASSIFY,
                help=(
                    "Per token of a synthetic copy: chance of the unknown word "
                    "(with --distill-augment)."
                ),
            ),
        ],
        0.1,
    ),
    _param(
        "augment_swap",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                max=1.0,
                rich_help_panel=CLASSIFY,
                help=(
                    "Per token of a synthetic copy: chance of another training word of its "
                    "kind (with --distill-augment)."
                ),
            ),
        ],
        0.1,
    ),
    _param(
        "augment_ngram",
        Annotated[
            float,
            typer.Option(
                min=0.0,
                max=1.0,
                rich_help_panel=CLASSIFY,
                help=(
                    "Per synthetic copy: chance of keeping only a random 1- to 5-gram of it "
                    "(with --distill-augment)."
                ),
            ),
        ],
        0.25,
    ),
    _param(
        "init_from",
        Annotated[
            Path | None,
            typer.Option(
                exists=True,
                file_okay=False,
                rich_help_panel=CLASSIFY,
                help=(
                    "Cloze checkpoint folder: start from its recurrent layers and word vectors "
                    "(same embedding/hidden size, layers, cell, merge)."
                ),
            ),
        ],
        None,
    ),
    _param(
        "debug",
        Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")],
        False,
    ),
]


def with_parameters(func: Callable[..., None]) -> None:
    """Give `func(ctx, **params)` the signature of `ctx` followed by `PARAMETERS`, for typer."""
    ctx = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    func.__signature__ = inspect.Signature([ctx, *PARAMETERS])  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in (ctx, *PARAMETERS)}
