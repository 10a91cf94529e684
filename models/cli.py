"""`bilstm train TASK`: one command for the four tasks (loaded by the `bilstm` umbrella).

Options can also come from `--config FILE.json` (keys are option names with underscores);
options given on the command line win over the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bilstm.models.config import TrainConfig
from bilstm.runtime.errors import BiLSTMError, CheckpointError, DataError, InputError
from bilstm.runtime.outpaths import same_file
from bilstm.runtime.tokenizer import DEFAULT_MAX_LENGTH, TokenizerConfig

try:  # typer >= 0.26 vendors click; its types and exceptions are not click's own
    from typer import _click as click  # type: ignore[attr-defined,unused-ignore]
except ImportError:
    import click  # type: ignore[no-redef,unused-ignore]

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
    "skip_bad_lines": {"classify", "tag", "cloze"},
}
WHY_NOT = {
    "skip_bad_lines": (
        ": a skipped CSV row would join its neighbours into a series with a gap; fix the row"
    ),
}


def _given(ctx: typer.Context, name: str) -> bool:
    """True when the option was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _apply_config(ctx: typer.Context, params: dict[str, Any], config: Path | None) -> set[str]:
    """Fill options not given on the command line from the JSON config file.

    Each value is checked with the option's own rules (type, range, choices, file exists)
    before any data is read. Returns the names of the options the file set.
    """
    if config is None:
        return set()
    try:
        doc = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{config}: cannot read the config file ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{config}: expected a JSON object of option names to values")
    options = {p.name: p for p in ctx.command.params}
    from_config = set()
    for key, value in doc.items():
        name = key.replace("-", "_")
        if name not in params or name in ("task", "config", "debug"):
            raise DataError(
                f"{config}: unknown option {key!r}; use the names of "
                "`bilstm train --help` (e.g. hidden_size)"
            )
        converted = _config_value(ctx, config, key, options[name], value)
        if not _given(ctx, name):
            params[name] = converted
            from_config.add(name)
    return from_config


def _config_value(ctx: Any, config: Path, key: str, option: Any, value: Any) -> Any:
    """`value` from the config file, checked and converted as the command line would."""
    flag = "--" + str(option.name).replace("_", "-")
    kind = option.type

    def bad(why: str) -> DataError:
        return DataError(
            f"{config}: {key!r} {why}; values in the config file follow the rules of {flag} "
            "(see `bilstm train --help`)"
        )

    if value is None:
        if option.default is None:
            return None
        raise bad("is null; give a value or leave the key out")
    if isinstance(kind, click.types.BoolParamType):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(kind, click.types.IntParamType):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(kind, click.types.FloatParamType):
        ok, want = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    else:  # choices, strings, paths
        ok, want = isinstance(value, str), "a string"
    if not ok:
        raise bad(f"is {json.dumps(value)}, expected {want}")
    try:
        converted = option.type_cast_value(ctx, value)
    except click.ClickException as exc:
        raise bad(f"is {json.dumps(value)}: {exc.message}") from None
    return converted.value if isinstance(converted, Enum) else converted


DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")


def _check_device(device: str, source: str) -> None:
    if not DEVICE.fullmatch(device):
        raise InputError(
            f"{source} {device!r}: not a device bilstm trains on; use cpu, cuda or cuda:N "
            "(N = the GPU index)"
        )


def _check_model_options(task: str, model_cfg: dict[str, Any]) -> None:
    """Combinations of model options that cannot work (e.g. --proj-size >= --hidden-size)."""
    from bilstm.models.config import ModelConfig

    probe = ModelConfig(vocab_size=2, num_labels=1, task=task, num_features=1, **model_cfg)
    try:
        probe.validate()
    except CheckpointError as exc:
        raise InputError(f"model options: {exc}") from None


def _check_out(p: dict[str, Any], force: bool, resume: bool) -> None:
    """Refuse an --out that training would damage, before any data is read.

    --out is a folder that the checkpoint's files are written into: it may be new, empty, or
    an earlier checkpoint (continued with --resume, replaced with --force). An existing file,
    a folder holding anything else, or a folder holding one of the inputs is refused.
    """
    from bilstm.models.checkpoint import CONFIG, OWN_FILES, is_checkpoint_config

    out = Path(p["out"])
    inputs = {"--data": p["data"], "--dev": p["dev"], "--config": p["config"]}
    inputs["--vectors"] = p["vectors"]
    for flag, source in inputs.items():
        if source is None:
            continue
        source = Path(source)
        if same_file(out, source) or out.resolve() == source.resolve():
            raise InputError(
                f"--out {out} is the {flag} file; writing the checkpoint folder there would "
                "destroy it. Give --out a new folder (e.g. runs/NAME)"
            )
        if any(same_file(out, d) for d in source.resolve().parents) or out.resolve() in (
            source.resolve().parents
        ):
            raise InputError(
                f"--out {out} contains the {flag} file {source}; a checkpoint folder must not "
                f"hold the training inputs. Move {source.name} elsewhere or give --out a "
                "new folder (e.g. runs/NAME)"
            )
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise InputError(
            f"--out {out} is a file; --out names the folder the checkpoint is written to. "
            "Give a new folder name (e.g. runs/NAME)"
        )
    is_checkpoint = out.is_dir() and is_checkpoint_config(out / CONFIG)
    if resume:
        if not is_checkpoint:
            raise CheckpointError(
                f"{out}: not a checkpoint folder (no bilstm config.json); --resume continues "
                "the run that an earlier `bilstm train` saved in --out. Drop --resume to start "
                "a new run"
            )
    elif is_checkpoint:
        if not force:
            raise InputError(
                f"--out {out} already holds a bilstm checkpoint; pass --resume to continue "
                "that run, --force to replace it (other files in the folder are kept), or "
                "give --out another folder"
            )
    elif out.is_dir():
        try:
            others = sorted(x.name for x in out.iterdir())
        except OSError as exc:
            raise InputError(f"--out {out}: cannot list the folder ({exc})") from None
        if others and set(others) <= set(OWN_FILES):
            if not force:
                raise InputError(
                    f"--out {out} holds checkpoint files but no valid config.json (an "
                    "interrupted save?); pass --force to replace them, or give --out another "
                    "folder"
                )
        elif others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise InputError(
                f"--out {out} is a folder that already holds other files ({shown}) and no "
                "bilstm checkpoint; training writes its checkpoint files into --out. Give "
                f"a new or empty folder (e.g. {out / 'run'})"
            )
    existing = out
    while not existing.exists():
        existing = existing.resolve().parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {existing} is not writable")


def _option(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + name.replace("_", "-")
    return f"{flag} {value}"


def _resume_options(task: str, p: dict[str, Any], given: dict[str, str]) -> None:
    """On --resume, take every setting the run was saved with, and refuse a different one.

    The saved run fixes its architecture, vocabulary, tokenizer and task settings, its seed
    (the random state is restored) and the optimiser's lr and weight decay (restored with
    the optimiser, the lr possibly already halved on a plateau): a different value given
    now would be silently ignored, so it is an error. Training-loop options (--epochs,
    --patience, --batch-size, --clip-norm, --class-weights, --word-dropout) may change; when
    not given they keep the saved run's values, not the command's defaults. `given` maps the
    options set on the command line or in --config to where they came from.
    """
    out = Path(p["out"])
    from bilstm.models.checkpoint import CONFIG

    try:
        saved = json.loads((out / CONFIG).read_text(encoding="utf-8"))
        model, train, tc = saved["model"], saved["train"], saved.get("task_config") or {}
        tok = saved.get("tokenizer") or {}
        saved_task = saved["task"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{out / CONFIG}: malformed checkpoint config ({exc!r})") from None
    if saved_task != task:
        raise CheckpointError(f"{out}: is a {saved_task} checkpoint, cannot resume it as {task}")
    fixed: dict[str, Any] = {
        "hidden_size": model.get("hidden_size"),
        "layers": model.get("num_layers"),
        "cell": model.get("cell"),
        "merge": model.get("merge"),
        "proj_size": model.get("proj_size"),
        "dropout": model.get("dropout"),
        "lr": train.get("lr"),
        "weight_decay": train.get("weight_decay"),
        "seed": train.get("seed"),
    }
    if task != "forecast":
        fixed |= {
            "embedding_dim": model.get("embedding_dim"),
            "embedding_dropout": model.get("embedding_dropout"),
            "max_length": tok.get("max_length"),
            "lowercase": tok.get("lowercase"),
            "min_freq": train.get("min_freq"),
            "max_vocab": train.get("max_vocab"),
            "vectors": train.get("vectors"),
        }
    if task == "classify":
        fixed["pooling"] = model.get("pooling")
    if task == "tag":
        fixed["char_features"] = bool(model.get("char_vocab_size"))
    if task == "forecast":
        columns = list(tc.get("columns") or [])
        fixed |= {
            "target": tc.get("target"),
            "features": ",".join(columns[1:]),
            "window": tc.get("window"),
            "horizon": tc.get("horizon"),
            "season": tc.get("season"),
        }
    loop = ["epochs", "batch_size", "clip_norm", "patience"]
    loop += {"classify": ["class_weights"], "tag": ["word_dropout"]}.get(task, [])
    differ = []
    for name, was in fixed.items():
        now = p[name].value if isinstance(p[name], Enum) else p[name]
        if name not in given:
            p[name] = was
            continue
        if name == "features":
            same = [f.strip() for f in str(now).split(",") if f.strip()] == columns[1:]
        elif name == "vectors":
            same = was is not None and (str(now) == was or same_file(Path(now), Path(was)))
        else:
            same = now == was
        if not same:
            differ.append(f"{_option(name, now)}{given[name]} (the saved run has {was})")
    if differ:
        raise InputError(
            f"--resume {out}: the saved run fixes these settings, and they differ: "
            + "; ".join(differ)
            + ". A resumed run keeps its architecture, vocabulary, tokenizer, task settings, "
            "seed, lr and weight decay (only --epochs, --patience, --batch-size, --clip-norm, "
            "--class-weights, --word-dropout, --device and --threads may change): drop those "
            "options, or train a new run into another --out"
        )
    for name in loop:
        if name not in given and name in train:
            p[name] = train[name]


def _check_task_options(
    ctx: typer.Context, task: str, params: dict[str, Any], from_config: set[str]
) -> None:
    for name, tasks in ONLY_FOR.items():
        if (_given(ctx, name) or name in from_config) and task not in tasks:
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(
                f"{flag} applies to {'/'.join(sorted(tasks))}, not {task}{WHY_NOT.get(name, '')}"
            )


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
    out: Annotated[
        Path,
        typer.Option(
            help=(
                "Checkpoint folder to write: new or empty (an existing checkpoint needs "
                "--resume or --force; a file or a folder of other files is refused)."
            )
        ),
    ],
    config: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON file of option values.")
    ] = None,
    # model
    embedding_dim: Annotated[
        int, typer.Option(min=1, rich_help_panel=MODEL, help="Word embedding size.")
    ] = 128,
    hidden_size: Annotated[
        int, typer.Option(min=1, rich_help_panel=MODEL, help="LSTM/GRU units per direction.")
    ] = 128,
    layers: Annotated[
        int, typer.Option(min=1, rich_help_panel=MODEL, help="Stacked bidirectional layers.")
    ] = 1,
    cell: Annotated[
        Cell, typer.Option(rich_help_panel=MODEL, help="Recurrent cell type.")
    ] = Cell.lstm,
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
    dropout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            rich_help_panel=MODEL,
            help="Dropout between layers and before the output layer.",
        ),
    ] = 0.3,
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
    lowercase: Annotated[
        bool,
        typer.Option(rich_help_panel=TEXT, help="Lower-case words before the vocabulary lookup."),
    ] = True,
    min_freq: Annotated[
        int,
        typer.Option(
            min=1, rich_help_panel=TEXT, help="Words seen fewer times in training become <unk>."
        ),
    ] = 1,
    max_vocab: Annotated[
        int | None,
        typer.Option(
            min=4, rich_help_panel=TEXT, help="Keep at most this many words (most frequent first)."
        ),
    ] = None,
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
    target: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=SERIES, help="CSV column to forecast (required for a new run)."
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=SERIES,
            help=(
                "Comma-separated. Default: every other numeric column except row-index-like "
                "ones (named index/id/row/step..., or integers counting up by a constant "
                "step), which are reported on stderr; name them here to use them."
            ),
        ),
    ] = None,
    window: Annotated[
        int,
        typer.Option(
            min=1, rich_help_panel=SERIES, help="Rows of history the model reads per forecast."
        ),
    ] = 48,
    horizon: Annotated[
        int, typer.Option(min=1, rich_help_panel=SERIES, help="Steps forecast after each window.")
    ] = 1,
    season: Annotated[
        int | None,
        typer.Option(min=1, rich_help_panel=SERIES, help="Season length for the naive baseline."),
    ] = None,
    # training
    epochs: Annotated[
        int,
        typer.Option(min=1, rich_help_panel=TRAINING, help="Most passes over the training data."),
    ] = 20,
    batch_size: Annotated[
        int, typer.Option(min=1, rich_help_panel=TRAINING, help="Examples per optimiser step.")
    ] = 128,
    lr: Annotated[
        float,
        typer.Option(
            min=0.0, rich_help_panel=TRAINING, help="Adam learning rate (halved on a dev plateau)."
        ),
    ] = 2e-3,
    weight_decay: Annotated[
        float, typer.Option(min=0.0, rich_help_panel=TRAINING, help="Adam weight decay (L2).")
    ] = 0.0,
    clip_norm: Annotated[
        float,
        typer.Option(
            min=0.0,
            rich_help_panel=TRAINING,
            help="Clip the gradient norm to this (0: no clipping).",
        ),
    ] = 5.0,
    patience: Annotated[
        int,
        typer.Option(
            min=1,
            rich_help_panel=TRAINING,
            help="Stop after this many epochs without a better dev metric.",
        ),
    ] = 3,
    seed: Annotated[
        int,
        typer.Option(
            rich_help_panel=TRAINING, help="Random seed (same seed, data and options: same model)."
        ),
    ] = 13,
    device: Annotated[
        str, typer.Option(rich_help_panel=TRAINING, help="cpu, cuda or cuda:N")
    ] = "cpu",
    threads: Annotated[
        int | None, typer.Option(min=1, rich_help_panel=TRAINING, help="torch intra-op threads.")
    ] = None,
    skip_bad_lines: Annotated[
        bool,
        typer.Option(
            rich_help_panel=TRAINING,
            help="Skip malformed text lines (counted) instead of stopping.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            rich_help_panel=TRAINING,
            help="Continue the run saved in --out (weights, optimiser, epoch).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            rich_help_panel=TRAINING,
            help="Replace the checkpoint already in --out (files of your own there are kept).",
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
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Train a BiLSTM model for TASK and write a checkpoint folder to --out."""
    params = dict(ctx.params)
    try:
        from_config = _apply_config(ctx, params, config)
        _check_task_options(ctx, task.value, params, from_config)
        given = {name: "" for name in params if _given(ctx, name)}
        given |= {name: f" (from {config})" for name in from_config}
        _check_device(params["device"], "--device" + given.get("device", ""))
        _check_out(params, params["force"], params["resume"])
        if params["resume"]:
            _resume_options(task.value, params, given)
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
    if task is Task.classify:
        model_cfg["pooling"] = Pooling(p["pooling"]).value
    _check_model_options(task.value, model_cfg)
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
        yield Console(stderr=True, soft_wrap=True)
        return
    cuda = cfg.device.startswith("cuda")
    if cuda:
        cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(cfg.device)
    torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
    rank = torch.distributed.get_rank()
    try:
        yield Console(stderr=True, soft_wrap=True, quiet=rank != 0)
    finally:
        torch.distributed.destroy_process_group()


def _default_features(data: Path, series: Any, target: str, console: Console) -> list[str]:
    """All numeric columns but the target and row-index-like ones (reported on stderr).

    A column with numbers and a non-numeric cell is an error naming file:line; a column of
    text only (e.g. dates) is left out and reported.
    """
    from bilstm.models.forecasting import index_like_columns

    for name, (_, _, numbers) in series.non_numeric.items():
        if numbers and name != target:
            raise series.cell_error(
                data,
                name,
                "; fix the cell, or name the feature columns with --features "
                "(default: every other numeric column)",
            )
    text = [c for c in series.non_numeric if c != target]
    if text:
        console.print(f"forecast: not using the non-numeric columns {text} as features")
    candidates = [c for c in series.columns if c != target]
    excluded = index_like_columns({c: series.columns[c] for c in candidates})
    if excluded:
        why = "; ".join(f"'{c}' {reason}" for c, reason in excluded.items())
        console.print(
            f"forecast: not using {list(excluded)} as features: they look like row indexes "
            f"({why}), which would teach the model the position in the file. Name them in "
            "--features to use them anyway"
        )
    return [c for c in candidates if c not in excluded]


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
            paths=(data, dev),
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
            paths=(data, dev),
        )
    elif task is Task.forecast:
        from bilstm.models.forecasting import train_forecaster

        if not p["target"]:  # on --resume, the saved run's target is filled in
            raise BiLSTMError("forecast needs --target COLUMN (the series to predict)")
        train_series = datasets.read_series(data)
        target = p["target"]
        if target not in train_series.columns:
            if target in train_series.non_numeric:
                raise train_series.cell_error(data, target, " (the --target column)")
            raise DataError(
                f"{data}: --target {target!r} is not a numeric column "
                f"(numeric columns: {list(train_series.columns)})"
            )
        if p["features"] is not None:
            feats = [f.strip() for f in p["features"].split(",") if f.strip()]
        else:
            feats = _default_features(data, train_series, target, console)
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
            datasets.read_text_lines(data, p["skip_bad_lines"]),
            datasets.read_text_lines(dev, p["skip_bad_lines"]),
            out,
            model_cfg,
            train_cfg,
            tok_cfg,
            info,
            console=console,
            resume=p["resume"],
        )
