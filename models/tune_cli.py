"""`bilstm tune TASK`: hyper-parameter search over `bilstm train` (the tune extra: Optuna).

Options of `bilstm train` that are not tune's own (e.g. `--epochs 10`, `--target Demand`,
`--config base.json`) are given to every trial unchanged and repeated in `best.json`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bilstm.core.errors import BiLSTMError, InputError
from bilstm.models.cli_options import Task

app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

OWN_TRAIN_OPTIONS = ("task", "data", "dev", "out", "debug")
REFUSED = {"resume": "a study resumes by itself", "force": "trial folders are tune's own"}
EXIT_INTERRUPTED = 130


def _install_hint() -> None:
    for module, extra in (("optuna", "tune"), ("torch", "train")):
        try:
            __import__(module)
        except ImportError:
            raise InputError(
                f"bilstm tune needs {module}, which is not installed: pip install 'bilstm[{extra}]'"
            ) from None


def _train_context(task: str, data: Path, dev: Path, out: Path, extras: list[str]) -> Any:
    """The `bilstm train` command's parse of the options every trial gets (checked now)."""
    from bilstm.models.cli import app as train_app
    from bilstm.models.cli import click

    command = typer.main.get_command(train_app)
    args = [task, "--data", str(data), "--dev", str(dev), "--out", str(out), *extras]
    try:
        return command.make_context("bilstm train", args)
    except click.ClickException as exc:
        raise InputError(
            f"the bilstm train options given to every trial ({' '.join(extras) or 'none'}): "
            f"{exc.format_message()}"
        ) from None


def _fixed_options(ctx: Any, task: str) -> dict[str, Any]:
    """Option values every trial shares: --config's, then those on the command line."""
    from bilstm.models.cli import ONLY_FOR, _given
    from bilstm.models.tune import plain

    options = {p.name: p for p in ctx.command.params}
    fixed: dict[str, Any] = {}
    config = ctx.params.get("config")
    if config is not None:
        from bilstm.models.cli import _apply_config

        params = dict(ctx.params)
        for name in _apply_config(ctx, params, Path(config)):
            fixed[name] = plain(params[name])
    for name in options:
        if name in OWN_TRAIN_OPTIONS or name == "config" or not _given(ctx, name):
            continue
        if name in REFUSED:
            raise InputError(f"--{name} is not a bilstm tune option: {REFUSED[name]}")
        fixed[name] = plain(ctx.params[name])
    for name in fixed:
        if name in ONLY_FOR and task not in ONLY_FOR[name]:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} applies to {'/'.join(sorted(ONLY_FOR[name]))}, not {task}")
    return fixed


def _space(task: str, path: Path | None, ctx: Any, fixed: dict[str, Any]) -> Any:
    from bilstm.models.cli import _config_value
    from bilstm.models.tune_space import check_values, space_from

    options = {p.name: p for p in ctx.command.params}
    space = space_from(task, path, set(options))
    where = Path(path) if path else Path("the default space")
    both = sorted(set(fixed) & ({d.name for d in space.dimensions} | set(space.fixed)))
    if both:
        raise InputError(
            f"{', '.join('--' + n.replace('_', '-') for n in both)}: given to every trial and "
            f"also in the search space; drop one (the space: {where})"
        )
    check_values(space, lambda name, value: _config_value(ctx, where, name, options[name], value))
    return space


@app.command(
    no_args_is_help=True,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def tune(
    ctx: typer.Context,
    task: Annotated[Task, typer.Argument(help="classify | tag | forecast | cloze")],
    data: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Training data.")
    ] = None,
    dev: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Dev data: scores trials (without --folds) and reports on the best model.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Study folder: new or empty, or an earlier study's (resumed)."),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials in the study, in all.")] = 20,
    timeout: Annotated[
        float | None,
        typer.Option(min=1, help="Seconds after which no new trial starts (this run)."),
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Trials run in parallel (processes).")] = 1,
    space: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="JSON search space (see --show-space)."),
    ] = None,
    objective: Annotated[
        str, typer.Option(help="accuracy, or accuracy,speed (Pareto front with items/s).")
    ] = "accuracy",
    folds: Annotated[
        int,
        typer.Option(
            min=0, help="k-fold cross-validation on the training data (0: score on --dev)."
        ),
    ] = 0,
    seed: Annotated[
        int, typer.Option(help="Seed of the sampler and the folds, and every trial's --seed.")
    ] = 13,
    keep_checkpoints: Annotated[
        bool, typer.Option("--keep-checkpoints", help="Keep every trial's models.")
    ] = False,
    speed_threads: Annotated[
        int, typer.Option(min=1, help="ONNX Runtime threads when timing (speed objective).")
    ] = 1,
    show_space: Annotated[
        bool, typer.Option("--show-space", help="Print TASK's default space as JSON and exit.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", hidden=True)] = False,
) -> None:
    """Search TASK's hyper-parameters with Optuna: each trial is a bilstm train run.

    Other bilstm train options (--epochs 10, --target Demand, --config FILE) go to every trial.

    Writes OUT/best.json (a bilstm train --config file), OUT/best/ and OUT/results.json.

    The study (OUT/study.db) resumes when the same command is run again.
    """
    try:
        if show_space:
            from bilstm.models.tune_space import default_space

            typer.echo(json.dumps(default_space(task.value), indent=2))
            return
        _tune(
            ctx,
            task.value,
            data,
            dev,
            out,
            trials,
            timeout,
            jobs,
            space,
            objective,
            folds,
            seed,
            keep_checkpoints,
            speed_threads,
        )
    except BiLSTMError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo(f"interrupted: rerun the same command to resume the study in {out}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _tune(
    ctx: typer.Context,
    task: str,
    data: Path | None,
    dev: Path | None,
    out: Path | None,
    trials: int,
    timeout: float | None,
    jobs: int,
    space_path: Path | None,
    objective: str,
    folds: int,
    seed: int,
    keep: bool,
    speed_threads: int,
) -> None:
    from bilstm.models.tune import OBJECTIVES, TuneSettings, check_out

    missing = [f"--{n}" for n, v in (("data", data), ("dev", dev), ("out", out)) if v is None]
    if missing:
        raise InputError(f"missing {', '.join(missing)} (bilstm tune TASK --data --dev --out)")
    assert data is not None and dev is not None and out is not None
    wanted = tuple(o.strip() for o in objective.split(",") if o.strip())
    if (
        not wanted
        or wanted[0] != "accuracy"
        or any(o not in OBJECTIVES for o in wanted)
        or len(set(wanted)) != len(wanted)
    ):
        raise InputError(
            f"--objective {objective!r}: use accuracy (the task's dev metric) or accuracy,speed"
        )
    if folds == 1:
        raise InputError("--folds 1: cross-validation needs at least 2 folds (0: use --dev)")
    if "--seed" in ctx.args:
        raise InputError("--seed is bilstm tune's own option; give it once")
    extras = [*ctx.args, "--seed", str(seed)]
    _install_hint()
    train_ctx = _train_context(task, data, dev, out / "trials" / "probe", extras)
    fixed = _fixed_options(train_ctx, task)
    space = _space(task, space_path, train_ctx, fixed)
    config = train_ctx.params.get("config")
    resume = check_out(
        out, {"--data": data, "--dev": dev, "--space": space_path, "--config": config}
    )
    from bilstm.runtime.plots import CURVES

    curve = CURVES[task]
    threads = fixed.get("threads")
    if threads is None and jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    settings = TuneSettings(
        task=task,
        data=data,
        dev=dev,
        out=out,
        metric=curve.metrics[0],
        higher_is_better=curve.higher_is_better,
        space=space,
        train_args=tuple(extras),
        fixed=fixed,
        epochs=int(fixed.get("epochs", train_ctx.params["epochs"])),
        trials=trials,
        timeout=timeout,
        jobs=jobs,
        speed="speed" in wanted,
        folds=folds,
        seed=seed,
        keep_checkpoints=keep,
        trial_threads=threads if "threads" not in fixed else None,
        speed_threads=speed_threads,
    )
    from bilstm.models.tune import PLOT, finish, search

    study = search(settings, resume)
    finish(study, settings)
    _plot(out, out / PLOT)


def _plot(folder: Path, output: Path) -> None:
    """OUT/study.png when matplotlib (the plot extra) is there; else say how to draw it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            f"to draw the study: pip install 'bilstm[plot]' && bilstm plot study {folder}",
            file=sys.stderr,
        )
        return
    from bilstm.runtime.plots import DEFAULT_DPI, save_figure, study_figure

    save_figure(study_figure(folder, 10.0, 5.0), output, DEFAULT_DPI, "png")
    print(f"wrote {output}", file=sys.stderr)
