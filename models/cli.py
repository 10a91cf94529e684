"""`bilstm train TASK`: one command for the four tasks (loaded by the `bilstm` umbrella).

Options can also come from `--config FILE.json` (keys are option names with underscores);
options given on the command line win over the file.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bilstm.models.config import TrainConfig
from bilstm.runtime.errors import BiLSTMError, DataError
from bilstm.runtime.tokenizer import DEFAULT_MAX_LENGTH, TokenizerConfig

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)


class Task(str, Enum):
    classify = "classify"
    tag = "tag"
    forecast = "forecast"
    cloze = "cloze"


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

# Options that only make sense for some tasks: giving them elsewhere is an error, not a no-op.
ONLY_FOR = {
    "pooling": {"classify"},
    "class_weights": {"classify"},
    "tag_column": {"tag"},
    "char_features": {"tag"},
    "word_dropout": {"tag"},
    "target": {"forecast"},
    "features": {"forecast"},
    "window": {"forecast"},
    "horizon": {"forecast"},
    "season": {"forecast"},
    "embedding_dim": {"classify", "tag", "cloze"},
    "min_freq": {"classify", "tag", "cloze"},
    "max_vocab": {"classify", "tag", "cloze"},
    "max_length": {"classify", "tag", "cloze"},
    "lowercase": {"classify", "tag", "cloze"},
    "vectors": {"classify", "tag", "cloze"},
}


def _given(ctx: typer.Context, name: str) -> bool:
    """True when the option was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _apply_config(ctx: typer.Context, params: dict[str, Any], config: Path | None) -> None:
    """Fill options not given on the command line from the JSON config file."""
    if config is None:
        return
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{config}: cannot read the config file ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{config}: expected a JSON object of option names to values")
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in params or name in ("task", "config", "debug"):
            raise DataError(
                f"{config}: unknown option {key!r}; use the names of "
                "`bilstm train --help` (e.g. hidden_size)"
            )
        if not _given(ctx, name):
            params[name] = value


def _check_task_options(
    ctx: typer.Context, task: str, params: dict[str, Any], from_config: set[str]
) -> None:
    for name, tasks in ONLY_FOR.items():
        if (_given(ctx, name) or name in from_config) and task not in tasks:
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(f"{flag} applies to {'/'.join(sorted(tasks))}, not {task}")


@app.command(no_args_is_help=True)
def train(
    ctx: typer.Context,
    task: Annotated[Task, typer.Argument(help="classify | tag | forecast | cloze")],
    data: Annotated[
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
    dev: Annotated[
        Path,
        typer.Option(
            exists=True, dir_okay=False, help="Dev data (same format): metrics, early stopping."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint folder to write.")],
    config: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON file of option values.")
    ] = None,
    # model
    embedding_dim: Annotated[int, typer.Option(min=1, rich_help_panel=MODEL)] = 128,
    hidden_size: Annotated[int, typer.Option(min=1, rich_help_panel=MODEL)] = 128,
    layers: Annotated[int, typer.Option(min=1, rich_help_panel=MODEL)] = 1,
    cell: Annotated[Cell, typer.Option(rich_help_panel=MODEL)] = Cell.lstm,
    merge: Annotated[
        Merge, typer.Option(rich_help_panel=MODEL, help="How the two directions combine.")
    ] = Merge.concat,
    pooling: Annotated[
        Pooling, typer.Option(rich_help_panel=MODEL, help="classify only.")
    ] = Pooling.max,
    proj_size: Annotated[
        int,
        typer.Option(
            min=0,
            rich_help_panel=MODEL,
            help="LSTM projections: each direction's output projected to this size.",
        ),
    ] = 0,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.99, rich_help_panel=MODEL)] = 0.3,
    embedding_dropout: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.99, rich_help_panel=MODEL, help="Spatial dropout on embeddings."
        ),
    ] = 0.1,
    # text
    max_length: Annotated[
        int, typer.Option(min=1, rich_help_panel=TEXT, help="Tokens kept per text.")
    ] = DEFAULT_MAX_LENGTH,
    lowercase: Annotated[bool, typer.Option(rich_help_panel=TEXT)] = True,
    min_freq: Annotated[int, typer.Option(min=1, rich_help_panel=TEXT)] = 1,
    max_vocab: Annotated[int | None, typer.Option(min=4, rich_help_panel=TEXT)] = None,
    class_weights: Annotated[
        bool, typer.Option(rich_help_panel=TEXT, help="classify: weight rare classes.")
    ] = False,
    tag_column: Annotated[
        str, typer.Option(rich_help_panel=TAGGING, help="upos, xpos or a column number.")
    ] = "upos",
    char_features: Annotated[
        bool, typer.Option(rich_help_panel=TAGGING, help="Character CNN word features.")
    ] = True,
    word_dropout: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.5, rich_help_panel=TAGGING, help="Train <unk> by dropping words."
        ),
    ] = 0.0,
    # forecast
    target: Annotated[str | None, typer.Option(rich_help_panel=SERIES)] = None,
    features: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=SERIES, help="Comma-separated; default all other numeric columns."
        ),
    ] = None,
    window: Annotated[int, typer.Option(min=1, rich_help_panel=SERIES)] = 48,
    horizon: Annotated[int, typer.Option(min=1, rich_help_panel=SERIES)] = 1,
    season: Annotated[
        int | None,
        typer.Option(min=1, rich_help_panel=SERIES, help="Season length for the naive baseline."),
    ] = None,
    # training
    epochs: Annotated[int, typer.Option(min=1, rich_help_panel=TRAINING)] = 20,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=TRAINING)] = 128,
    lr: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING)] = 2e-3,
    weight_decay: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING)] = 0.0,
    clip_norm: Annotated[float, typer.Option(min=0.0, rich_help_panel=TRAINING)] = 5.0,
    patience: Annotated[int, typer.Option(min=1, rich_help_panel=TRAINING)] = 3,
    seed: Annotated[int, typer.Option(rich_help_panel=TRAINING)] = 13,
    device: Annotated[str, typer.Option(rich_help_panel=TRAINING, help="cpu or cuda")] = "cpu",
    threads: Annotated[
        int | None, typer.Option(min=1, rich_help_panel=TRAINING, help="torch intra-op threads.")
    ] = None,
    skip_bad_lines: Annotated[bool, typer.Option(rich_help_panel=TRAINING)] = False,
    resume: Annotated[
        bool,
        typer.Option(
            rich_help_panel=TRAINING,
            help="Continue the run saved in --out (weights, optimiser, epoch).",
        ),
    ] = False,
    vectors: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            rich_help_panel=TEXT,
            help="Pretrained word vectors, word2vec/GloVe text format.",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Train a BiLSTM model for TASK and write a checkpoint folder to --out."""
    params = dict(ctx.params)
    try:
        before = dict(params)
        _apply_config(ctx, params, config)
        from_config = {k for k in params if params[k] != before[k]}
        _check_task_options(ctx, task.value, params, from_config)
        _train(Task(params["task"]), params)
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _train(task: Task, p: dict[str, Any]) -> None:
    import torch

    if p["threads"]:
        torch.set_num_threads(p["threads"])
    if p["device"].startswith("cuda") and not torch.cuda.is_available():
        raise BiLSTMError(
            "--device cuda: torch sees no CUDA GPU (torch.cuda.is_available() "
            "is False); use --device cpu or install a CUDA build of torch"
        )
    model_cfg = {
        "hidden_size": p["hidden_size"],
        "num_layers": p["layers"],
        "cell": Cell(p["cell"]).value,
        "merge": Merge(p["merge"]).value,
        "proj_size": p["proj_size"],
        "dropout": p["dropout"],
    }
    if task is not Task.forecast:
        model_cfg |= {
            "embedding_dim": p["embedding_dim"],
            "embedding_dropout": p["embedding_dropout"],
        }
    train_cfg = TrainConfig(
        epochs=p["epochs"],
        batch_size=p["batch_size"],
        lr=p["lr"],
        weight_decay=p["weight_decay"],
        clip_norm=p["clip_norm"],
        patience=p["patience"],
        seed=p["seed"],
        min_freq=p["min_freq"],
        max_vocab=p["max_vocab"],
        class_weights=p["class_weights"],
        word_dropout=p["word_dropout"],
        vectors=str(p["vectors"]) if p["vectors"] else None,
        device=p["device"],
    )
    with _distributed(train_cfg) as console:
        _run_task(task, p, model_cfg, train_cfg, console)


@contextlib.contextmanager
def _distributed(cfg: TrainConfig) -> Iterator[Console]:
    """Join the torchrun process group when started by torchrun (WORLD_SIZE > 1).

    gloo on CPU, nccl on CUDA (each rank on its LOCAL_RANK GPU). Only rank 0 prints.
    """
    import os

    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield Console(stderr=True)
        return
    cuda = cfg.device.startswith("cuda")
    if cuda:
        cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(cfg.device)
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    rank = torch.distributed.get_rank()
    try:
        yield Console(stderr=True, quiet=rank != 0)
    finally:
        torch.distributed.destroy_process_group()


def _run_task(
    task: Task,
    p: dict[str, Any],
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    console: Console,
) -> None:
    from bilstm.runtime import datasets

    data, dev, out = Path(p["data"]), Path(p["dev"]), Path(p["out"])
    info = {"train": data.name, "dev": dev.name, "argv": sys.argv[1:]}
    tok_cfg = TokenizerConfig(lowercase=p["lowercase"], max_length=p["max_length"])
    if task is Task.classify:
        from bilstm.models.classify import train_classifier

        model_cfg["pooling"] = Pooling(p["pooling"]).value
        train_classifier(
            datasets.read_classification(data, p["skip_bad_lines"]),
            datasets.read_classification(dev, p["skip_bad_lines"]),
            out,
            model_cfg,
            train_cfg,
            tok_cfg,
            info,
            console=console,
            resume=p["resume"],
        )
    elif task is Task.tag:
        from bilstm.models.tagging import train_tagger

        train_tagger(
            datasets.read_tagged(data, p["tag_column"], p["skip_bad_lines"]),
            datasets.read_tagged(dev, p["tag_column"], p["skip_bad_lines"]),
            out,
            model_cfg,
            train_cfg,
            p["lowercase"],
            p["max_length"],
            p["char_features"],
            info,
            console=console,
            resume=p["resume"],
        )
    elif task is Task.forecast:
        from bilstm.models.forecasting import train_forecaster

        if not p["target"]:
            if not p["resume"]:
                raise BiLSTMError("forecast needs --target COLUMN (the series to predict)")
            p["target"] = json.loads((out / "config.json").read_text())["task_config"]["target"]
        train_series = datasets.read_series(data)
        if p["target"] not in train_series.columns:
            raise DataError(
                f"{data}: --target {p['target']!r} is not a numeric column "
                f"(numeric columns: {list(train_series.columns)})"
            )
        feats = (
            [f.strip() for f in p["features"].split(",") if f.strip()]
            if p["features"]
            else [c for c in train_series.columns if c != p["target"]]
        )
        columns = [p["target"], *[f for f in feats if f != p["target"]]]
        train_series = datasets.read_series(data, columns)
        train_forecaster(
            train_series,
            datasets.read_series(dev, columns),
            out,
            p["target"],
            feats,
            p["window"],
            p["horizon"],
            p["season"],
            model_cfg,
            train_cfg,
            info,
            console=console,
            resume=p["resume"],
        )
    else:
        from bilstm.models.cloze import train_cloze

        train_cloze(
            datasets.read_text_lines(data),
            datasets.read_text_lines(dev),
            out,
            model_cfg,
            train_cfg,
            tok_cfg,
            info,
            console=console,
            resume=p["resume"],
        )
