"""`bilstm train TASK`: one command for the four tasks (loaded by the `bilstm` umbrella).

Options can also come from `--config FILE.json` (keys are option names with underscores);
options given on the command line win over the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bilstm.core.errors import BiLSTMError, CheckpointError, DataError, InputError
from bilstm.core.outpaths import same_file
from bilstm.models.augment import Augmentation
from bilstm.models.cli_options import with_parameters
from bilstm.models.options import TrainOptions
from bilstm.models.tasks import only_for

if TYPE_CHECKING:
    from rich.console import Console

    from bilstm.models.config import TrainConfig

# torch is imported only once a run starts (in _train and the task modules), so that
# `bilstm train --help` and option errors answer at once (torch takes seconds to import).

try:  # typer >= 0.26 vendors click; its types and exceptions are not click's own
    from typer import _click as click  # type: ignore[attr-defined,unused-ignore]
except ImportError:
    import click  # type: ignore[no-redef,unused-ignore]

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

# Options that only make sense for some tasks: giving them elsewhere is an error, not a no-op.
ONLY_FOR = only_for()
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
    if option.multiple:  # a repeatable option (--teacher): a list of strings, or one string
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str) for v in values):
            raise bad(f"is {json.dumps(value)}, expected a string or a list of strings")
        try:
            return option.type_cast_value(ctx, values)
        except click.ClickException as exc:
            raise bad(f"is {json.dumps(value)}: {exc.message}") from None
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


def _check_out(opts: TrainOptions) -> None:
    """Refuse an --out that training would damage, before any data is read.

    --out is a folder that the checkpoint's files are written into: it may be new, empty, or
    an earlier checkpoint (continued with --resume, replaced with --force). An existing file,
    a folder holding anything else, or a folder holding one of the inputs is refused.
    """
    from bilstm.models.checkpoint import CONFIG, is_checkpoint_config

    out = Path(opts.out)
    inputs = [("--data", opts.data), ("--dev", opts.dev), ("--config", opts.config)]
    inputs += [("--vectors", opts.vectors), ("--init-from", opts.init_from)]
    inputs += [("--teacher", teacher) for teacher in opts.teacher]
    for flag, source in inputs:
        if source is not None:
            _check_not_inside(out, flag, Path(source))
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise InputError(
            f"--out {out} is a file; --out names the folder the checkpoint is written to. "
            "Give a new folder name (e.g. runs/NAME)"
        )
    is_checkpoint = out.is_dir() and is_checkpoint_config(out / CONFIG)
    if opts.resume:
        if not is_checkpoint:
            raise CheckpointError(
                f"{out}: not a checkpoint folder (no bilstm config.json); --resume continues "
                "the run that an earlier `bilstm train` saved in --out. Drop --resume to start "
                "a new run"
            )
    elif is_checkpoint:
        if not opts.force:
            raise InputError(
                f"--out {out} already holds a bilstm checkpoint; pass --resume to continue "
                "that run, --force to replace it (other files in the folder are kept), or "
                "give --out another folder"
            )
    elif out.is_dir():
        _check_other_files(out, opts.force)
    existing = out
    while not existing.exists():
        existing = existing.resolve().parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {existing} is not writable")


def _check_not_inside(out: Path, flag: str, source: Path) -> None:
    """--out must be neither the input file `source` nor a folder above it."""
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


def _check_other_files(out: Path, force: bool) -> None:
    """An --out folder without a checkpoint: empty, or only our files (with --force)."""
    from bilstm.models.checkpoint import OWN_FILES

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


def _option(name: str, value: Any) -> str:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + name.replace("_", "-")
    return f"{flag} {value}"


LOOP_OPTIONS = ("epochs", "batch_size", "clip_norm", "patience")
"""Training-loop options of every task: a resumed run may change them."""


def _resume_options(opts: TrainOptions, given: dict[str, str]) -> TrainOptions:
    """On --resume, take every setting the run was saved with, and refuse a different one.

    The saved run fixes its architecture, vocabulary, tokenizer and task settings, its seed
    (the random state is restored) and the optimiser's lr and weight decay (restored with
    the optimiser, the lr possibly already halved on a plateau): a different value given
    now would be silently ignored, so it is an error. Training-loop options (--epochs,
    --patience, --batch-size, --clip-norm, --class-weights, --word-dropout) may change; when
    not given they keep the saved run's values, not the command's defaults. `given` maps the
    options set on the command line or in --config to where they came from.
    """
    out = Path(opts.out)
    fixed, train, columns = _saved_run(opts)
    changes: dict[str, Any] = {}
    differ = []
    for name, was in fixed.items():
        if name not in given:
            changes[name] = was
            continue
        now = getattr(opts, name)
        if not _same_setting(name, now, was, columns):
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
    for name in (*LOOP_OPTIONS, *opts.info.loop_options):
        if name not in given and name in train:
            changes[name] = train[name]
    return replace(opts, **changes)


def _saved_run(opts: TrainOptions) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The option values the run in --out fixes, its 'train' settings and its columns."""
    from bilstm.models.checkpoint import CONFIG

    out = Path(opts.out)
    try:
        saved = json.loads((out / CONFIG).read_text(encoding="utf-8"))
        model, train, tc = saved["model"], saved["train"], saved.get("task_config") or {}
        tok = saved.get("tokenizer") or {}
        saved_task = saved["task"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{out / CONFIG}: malformed checkpoint config ({exc!r})") from None
    if saved_task != opts.task:
        raise CheckpointError(
            f"{out}: is a {saved_task} checkpoint, cannot resume it as {opts.task}"
        )
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
    if opts.info.text:
        fixed |= {
            "embedding_dim": model.get("embedding_dim"),
            "embedding_dropout": model.get("embedding_dropout"),
            "max_length": tok.get("max_length"),
            "lowercase": tok.get("lowercase"),
            "min_freq": train.get("min_freq"),
            "max_vocab": train.get("max_vocab"),
            "vectors": train.get("vectors"),
        }
    fixed |= opts.info.saved_settings(model, tc)
    return fixed, train, list(tc.get("columns") or [])


def _same_setting(name: str, now: Any, was: Any, columns: list[str]) -> bool:
    """Whether option `name` given as `now` asks for what the saved run has (`was`)."""
    if name == "features":  # the saved columns are [target, *features]
        return [f.strip() for f in str(now).split(",") if f.strip()] == columns[1:]
    if name == "vectors":  # the same file, however its path is written
        return was is not None and (str(now) == was or same_file(Path(now), Path(was)))
    return bool(now == was)


def _check_task_options(
    ctx: typer.Context, task: str, params: dict[str, Any], from_config: set[str]
) -> None:
    """Refuse an option, given on the command line or in --config, that `task` does not take."""
    for name, tasks in ONLY_FOR.items():
        if (_given(ctx, name) or name in from_config) and task not in tasks:
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(
                f"{flag} applies to {'/'.join(sorted(tasks))}, not {task}{WHY_NOT.get(name, '')}"
            )


def _check_distill_options(opts: TrainOptions, given: dict[str, str]) -> None:
    """Distillation settings need a teacher (augmentation settings a --distill-augment);
    --init-from starts a new run from scratch."""
    for name in ("distill_temperature", "distill_weight"):
        if name in given and not opts.teacher:
            flag = "--" + name.replace("_", "-")
            raise InputError(
                f"{flag}{given[name]} sets the soft-target loss of distillation; give "
                "--teacher CHECKPOINT too, or drop it"
            )
    # the counts and probabilities are checked now, before any data or teacher is read
    Augmentation(opts.distill_augment, opts.augment_mask, opts.augment_swap, opts.augment_ngram)
    if opts.distill_augment and not opts.teacher:
        raise InputError(
            f"--distill-augment {opts.distill_augment}{given.get('distill_augment', '')} makes "
            "synthetic texts for teachers to label; give --teacher CHECKPOINT too, or drop it"
        )
    for name in ("augment_mask", "augment_swap", "augment_ngram"):
        if name in given and not opts.distill_augment:
            flag = "--" + name.replace("_", "-")
            raise InputError(
                f"{flag}{given[name]} shapes the synthetic texts of --distill-augment; give "
                "--distill-augment N (N > 0) too, or drop it"
            )
    if opts.init_from is not None and opts.resume:
        raise InputError(
            f"--init-from {opts.init_from} initialises a new run, but --resume continues the "
            f"weights saved in {opts.out}; drop one of them"
        )
    if opts.init_from is not None and opts.vectors is not None:
        raise InputError(
            f"--init-from {opts.init_from} and --vectors {opts.vectors} both set the word "
            "vectors; give one (the cloze checkpoint's vectors already come with --init-from)"
        )
    for i, teacher in enumerate(opts.teacher):
        if _same_folder(teacher, opts.out):
            raise InputError(
                f"--teacher {teacher} is the --out folder; the student cannot overwrite its "
                "own teacher. Give --out another folder"
            )
        if any(_same_folder(teacher, earlier) for earlier in opts.teacher[:i]):
            raise InputError(
                f"--teacher {teacher} is given twice{given.get('teacher', '')}; each teacher "
                "counts once in the ensemble's average. Drop the repeat"
            )


def _same_folder(a: Path, b: Path) -> bool:
    return same_file(a, b) or a.resolve() == b.resolve()


def train(ctx: typer.Context, **values: Any) -> None:
    """Train a BiLSTM model for TASK and write a checkpoint folder to --out."""
    # `values` are typer's conversions (Path, Enum); `params` click's, which the config file
    # and --resume then fill in. Both hold every option of cli_options.PARAMETERS.
    params = dict(ctx.params)
    config, debug, task = values["config"], values["debug"], values["task"].value
    try:
        from_config = _apply_config(ctx, params, config)
        _check_task_options(ctx, task, params, from_config)
        given = {name: "" for name in params if _given(ctx, name)}
        given |= {name: f" (from {config})" for name in from_config}
        _check_device(params["device"], "--device" + given.get("device", ""))
        opts = TrainOptions.from_params(params)
        _check_distill_options(opts, given)
        _check_out(opts)
        if opts.resume:
            opts = _resume_options(opts, given)
        _train(opts)
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


# typer reads the options from the signature that with_parameters gives `train`.
with_parameters(train)
app.command(no_args_is_help=True)(train)


def _train(opts: TrainOptions) -> None:
    """Set up torch (threads, device) and train the task the options name."""
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise BiLSTMError(
            "--device cuda: torch sees no CUDA GPU (torch.cuda.is_available() "
            "is False); use --device cpu or install a CUDA build of torch"
        )
    model_cfg = opts.model_settings()
    _check_model_options(opts.task, model_cfg)
    train_cfg = opts.train_config()
    with _distributed(train_cfg) as console:
        opts.info.train_from_options(opts, model_cfg, train_cfg, console)


@contextlib.contextmanager
def _distributed(cfg: TrainConfig) -> Iterator[Console]:
    """Join the torchrun process group when started by torchrun (WORLD_SIZE > 1).

    gloo on CPU, nccl on CUDA (each rank on its LOCAL_RANK GPU). Only rank 0 prints.
    """
    import torch
    from rich.console import Console

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
