"""`bilstm tune`: hyper-parameter search for `bilstm train` on Optuna.

Every trial is one `bilstm train` run (the same command, options and checks, in-process, its
output in `OUT/trials/NNNN/train.log`) with the trial's values of the search space
(`tune_space.py`). Its dev metric is reported to Optuna after every epoch through
`training.epoch_callback`, so the pruner (median of the earlier trials at the same epoch)
stops hopeless trials early. With `--folds K` a trial trains K models on folds of the
training data (`tune_folds.py`) and scores their mean dev metric: `--dev` then takes no part
in the search, and only reports on the chosen settings, retrained on all the training data.
With `--objective accuracy,speed` each trial's model is also exported (fp32, and int8 where
the task has it) and its items/s measured on the runtime (`BiLSTM.predict` on the
checkpoint's dev examples); the result is the Pareto front of metric and fp32 items/s.

`OUT` holds the study (`study.db`, SQLite: rerunning the same command resumes it, the trials
an interruption cut short run again), `tune.json` (the settings a resumed run must share),
`best.json` (a `bilstm train --config` file), `best/` (the best checkpoint), `results.json`
and the kept trial folders. `--jobs N` runs N worker processes on the same study.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import BiLSTMError, DataError, InputError, TuneError
from bilstm.core.outpaths import same_file
from bilstm.models.tune_space import Space

if TYPE_CHECKING:
    import optuna

STUDY_NAME = "bilstm-tune"
SETTINGS = "tune.json"
STUDY_DB = "study.db"
BEST_CONFIG = "best.json"
BEST_DIR = "best"
RESULTS = "results.json"
TRIALS = "trials"
FOLDS = "folds"
PLOT = "study.png"
OWN_NAMES = frozenset({SETTINGS, STUDY_DB, BEST_CONFIG, BEST_DIR, RESULTS, TRIALS, FOLDS, PLOT})
"""What `bilstm tune` writes into OUT (and all that may be there when it is resumed)."""

OBJECTIVES = ("accuracy", "speed")
MACHINE_OPTIONS = ("threads", "device", "debug")
"""`bilstm train` options about where a run goes, not what it learns: a resumed study may
change them, and best.json leaves them out."""
FAILURES_BEFORE_GIVING_UP = 3
"""Failed trials, with none completed, after which the search stops: every trial failing
means the data or options are wrong, not the hyper-parameters."""
SPEED_ITEMS = 256
SPEED_SECONDS = 1.0


@dataclass(frozen=True)
class TuneSettings:
    """One `bilstm tune` run."""

    task: str
    data: Path
    dev: Path
    out: Path
    metric: str
    """The task's picking metric (`dev_<metric>` in the training history)."""
    higher_is_better: bool
    space: Space
    train_args: tuple[str, ...] = ()
    """`bilstm train` options given to every trial, as typed."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Their values (what `best.json` repeats)."""
    epochs: int = 20
    trials: int = 20
    timeout: float | None = None
    jobs: int = 1
    speed: bool = False
    folds: int = 0
    seed: int = 13
    keep_checkpoints: bool = False
    trial_threads: int | None = None
    """torch threads per trial (None: the user's --threads, or torch's default)."""
    speed_threads: int = 1

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.out / STUDY_DB).resolve()}"

    def identity(self) -> dict[str, Any]:
        """What a resumed study must share with the run that started it."""
        return {
            "task": self.task,
            "data": str(self.data.resolve()),
            "dev": str(self.dev.resolve()),
            "objective": list(self.objective_names),
            "folds": self.folds,
            "seed": self.seed,
            "space": self.space.to_json(),
            "options": {k: v for k, v in self.fixed.items() if k not in MACHINE_OPTIONS},
        }

    @property
    def objective_names(self) -> tuple[str, ...]:
        return (self.metric, "items_per_s") if self.speed else (self.metric,)

    @property
    def directions(self) -> list[Any]:
        first = "maximize" if self.higher_is_better else "minimize"
        return [first, "maximize"] if self.speed else [first]


# -- output folder ---------------------------------------------------------------------------


def check_out(out: Path, inputs: dict[str, Path | None]) -> bool:
    """Check OUT before any work; True when it holds a study to resume.

    OUT may be new, empty, or a folder an earlier `bilstm tune` wrote (only its own names);
    a file, a folder of other files, or a folder holding one of the inputs is refused.
    """
    for flag, source in inputs.items():
        if source is None:
            continue
        source = Path(source)
        if same_file(out, source) or out.resolve() == source.resolve():
            raise InputError(f"--out {out} is the {flag} file; give --out a new folder")
        if out.resolve() in source.resolve().parents:
            raise InputError(
                f"--out {out} contains the {flag} file {source}; give --out a new folder "
                "(e.g. tune/NAME) outside the data"
            )
    if (out.exists() or out.is_symlink()) and not out.is_dir():
        raise InputError(f"--out {out} is a file; --out names the folder the study is kept in")
    if not out.is_dir():
        return False
    names = sorted(p.name for p in out.iterdir())
    others = [n for n in names if n not in OWN_NAMES and not n.startswith(f"{STUDY_DB}-")]
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise InputError(
            f"--out {out} holds files bilstm tune did not write ({shown}); give a new or "
            "empty folder (e.g. tune/NAME)"
        )
    if names and SETTINGS not in names:
        raise InputError(
            f"--out {out} has tune files but no {SETTINGS}; was it written by bilstm tune? "
            "Give a new folder"
        )
    return SETTINGS in names


def check_resumable(settings: TuneSettings) -> None:
    """Refuse to continue a study whose data, objective, folds, seed, space or options differ."""
    path = settings.out / SETTINGS
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TuneError(f"{path}: unreadable ({exc}); give --out a new folder") from None
    now = settings.identity()
    differ = [
        f"{key}: now {json.dumps(now[key])}, the study has {json.dumps(saved.get(key))}"
        for key in now
        if saved.get(key) != now[key]
    ]
    if differ:
        raise TuneError(
            f"--out {settings.out} holds a study run with other settings ("
            + "; ".join(differ)
            + "). Rerun with the study's settings to resume it (--trials, --timeout, --jobs, "
            "--threads, --device may change), or give --out a new folder"
        )


def _write_json(path: Path, value: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


# -- one trial -------------------------------------------------------------------------------


def option_args(options: dict[str, Any]) -> list[str]:
    """`bilstm train` flags for option values (`--no-x` for a false boolean)."""
    args = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def run_train(args: list[str], log: Path) -> None:
    """`bilstm train ARGS` in this process, its output (stdout and stderr) in `log`."""
    import typer

    from bilstm.models.cli import app, click

    command = typer.main.get_command(app)
    with open(log, "a", encoding="utf-8") as f, contextlib.redirect_stderr(f):
        with contextlib.redirect_stdout(f):
            try:
                command.main(["--debug", *args], prog_name="bilstm train", standalone_mode=False)
            except click.ClickException as exc:
                raise InputError(f"bilstm train: {exc.format_message()}") from None


def _summary(checkpoint: Path) -> dict[str, Any]:
    summary = json.loads((checkpoint / "summary.json").read_text(encoding="utf-8"))
    return summary if isinstance(summary, dict) else {}


@dataclass
class _Trial:
    """One trial's runs: its folder, option values and, per fold, the metric and epoch."""

    settings: TuneSettings
    trial: optuna.Trial
    options: dict[str, Any]
    folder: Path
    scores: list[float] = field(default_factory=list)
    best_epochs: list[int] = field(default_factory=list)

    def train_one(self, fold: int, data: Path, dev: Path, checkpoint: Path) -> None:
        import optuna

        s = self.settings
        single = not s.speed  # Optuna prunes single-objective studies only

        def on_epoch(row: dict[str, Any]) -> None:
            value = row.get(f"dev_{s.metric}")
            if not single or not isinstance(value, int | float):
                return
            self.trial.report(float(value), fold * s.epochs + int(row["epoch"]))
            if self.trial.should_prune():
                where = f"fold {fold + 1} epoch" if s.folds else "epoch"
                raise optuna.TrialPruned(f"pruned at {where} {row['epoch']}")

        args = [s.task, "--data", str(data), "--dev", str(dev), "--out", str(checkpoint)]
        args += list(s.train_args) + option_args(self.options)
        if s.trial_threads:
            args += ["--threads", str(s.trial_threads)]
        args += ["--force"]  # a retried trial replaces its own cut-short checkpoint
        from bilstm.models.training import epoch_callback

        with epoch_callback(on_epoch):
            run_train(args, self.folder / "train.log")
        summary = _summary(checkpoint)
        self.scores.append(float(summary["dev_metrics"][s.metric]))
        self.best_epochs.append(int(summary["best_epoch"]))


def _folds(settings: TuneSettings) -> list[tuple[Path, Path]]:
    if not settings.folds:
        return [(settings.data, settings.dev)]
    base = settings.out / FOLDS
    return [
        (
            base / f"fold-{k}" / f"train{_suffix(settings.data)}",
            base / f"fold-{k}" / f"dev{_suffix(settings.data)}",
        )
        for k in range(1, settings.folds + 1)
    ]


def _suffix(path: Path) -> str:
    return "".join(Path(path).suffixes[-1:]) or ".txt"


def objective(trial: optuna.Trial, settings: TuneSettings) -> float | tuple[float, float]:
    """Train (each fold of) one trial; its mean dev metric, and with speed its fp32 items/s."""
    options = settings.space.suggest(trial)
    folder = settings.out / TRIALS / f"{trial.number:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("options", options)
    run = _Trial(settings, trial, options, folder)
    started = time.perf_counter()
    try:
        for k, (data, dev) in enumerate(_folds(settings)):
            name = f"fold-{k + 1}" if settings.folds else "checkpoint"
            run.train_one(k, data, dev, folder / name)
        value = statistics.fmean(run.scores)
        trial.set_user_attr("fold_scores", run.scores)
        trial.set_user_attr("best_epochs", run.best_epochs)
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        checkpoint = folder / ("fold-1" if settings.folds else "checkpoint")
        if settings.speed:
            speeds = measure_speed(settings.task, checkpoint, folder, settings.speed_threads)
            for key, speed in speeds.items():
                trial.set_user_attr(key, speed)
            _report(trial, settings, value, time.perf_counter() - started, speeds)
            return value, speeds["items_per_s"]
        _report(trial, settings, value, time.perf_counter() - started)
        return value
    except BiLSTMError as exc:
        trial.set_user_attr("error", str(exc))
        _say(f"trial {trial.number}: failed: {exc} (log: {folder / 'train.log'})")
        _discard(folder, settings, keep_log=True)
        raise
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        raise
    except Exception as exc:
        import optuna

        if isinstance(exc, optuna.TrialPruned):
            _say(f"trial {trial.number}: {exc} ({_shown(options)})")
            _discard(folder, settings, keep_log=True)
        raise
    finally:
        if settings.folds and not settings.keep_checkpoints:
            # Fold models saw part of the data: none becomes "best" (fold 1 stays while its
            # exported models are timed; `finish` drops it with the trial's other files).
            for k in range(2 if settings.speed else 1, settings.folds + 1):
                shutil.rmtree(folder / f"fold-{k}", ignore_errors=True)


def _shown(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in options.items())


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _report(
    trial: optuna.Trial,
    s: TuneSettings,
    value: float,
    seconds: float,
    speeds: dict[str, float] | None = None,
) -> None:
    folds = trial.user_attrs.get("fold_scores", [])
    per_fold = f" (folds {' '.join(f'{v:.4f}' for v in folds)})" if s.folds else ""
    speed = ""
    if speeds:
        speed = "  " + "  ".join(f"{k} {v:,.0f}" for k, v in speeds.items())
    _say(
        f"trial {trial.number}: {s.metric} {value:.4f}{per_fold}{speed}  {seconds:.0f}s  "
        f"{_shown(trial.user_attrs['options'])}"
    )


def _discard(folder: Path, settings: TuneSettings, keep_log: bool) -> None:
    """Remove a trial's models (never `train.log`, which says what happened)."""
    if settings.keep_checkpoints:
        return
    for path in folder.iterdir() if folder.is_dir() else []:
        if keep_log and path.name == "train.log":
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def measure_speed(task: str, checkpoint: Path, folder: Path, threads: int) -> dict[str, float]:
    """Export `checkpoint` (fp32, and int8 where the task has variants) into `folder` and
    measure items/s of `BiLSTM.predict` on its dev examples, `threads` intra-op threads."""
    from bilstm.export import export_checkpoint
    from bilstm.runtime.tasks import spec

    with open(folder / "train.log", "a", encoding="utf-8") as f, contextlib.redirect_stderr(f):
        with contextlib.redirect_stdout(f):
            export_checkpoint(checkpoint, folder / "model.onnx")
            speeds = {"items_per_s": items_per_second(folder / "model.onnx", checkpoint, threads)}
            if spec(task).variants:
                export_checkpoint(checkpoint, folder / "model-int8.onnx", quantize="int8")
                speeds["int8_items_per_s"] = items_per_second(
                    folder / "model-int8.onnx", checkpoint, threads
                )
    return speeds


def items_per_second(model_path: Path, checkpoint: Path, threads: int) -> float:
    """Inputs per second of `BiLSTM.predict` on the checkpoint's dev examples (repeated to
    `SPEED_ITEMS` a call), timed over at least `SPEED_SECONDS` after a warm-up call."""
    import numpy as np

    from bilstm.runtime import BiLSTM

    examples = json.loads((checkpoint / "examples.json").read_text(encoding="utf-8"))
    if not examples:
        raise DataError(f"{checkpoint}: no dev examples to time the model on")
    items = (examples * math.ceil(SPEED_ITEMS / len(examples)))[:SPEED_ITEMS]
    inputs: Any = np.asarray(items, dtype=np.float32) if isinstance(items[0], list) else items
    model = BiLSTM.load(str(model_path), device="cpu", threads=threads)
    model.predict(inputs)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < SPEED_SECONDS:
        model.predict(inputs)
        done += len(items)
    return done / (time.perf_counter() - started)


# -- the study -------------------------------------------------------------------------------


def _storage(settings: TuneSettings) -> optuna.storages.RDBStorage:
    import optuna

    return optuna.storages.RDBStorage(
        settings.storage_url, engine_kwargs={"connect_args": {"timeout": 60}}
    )


def open_study(settings: TuneSettings, worker: int = 0) -> optuna.Study:
    """The study in OUT (created on first use), with a sampler seeded per worker."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.seed + worker)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if not settings.speed:
        # Never on a first epoch (steps are epochs from 1; Optuna prunes from step >= warmup).
        pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    study = optuna.create_study(
        storage=_storage(settings),
        study_name=STUDY_NAME,
        directions=settings.directions,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study.metric_names is None:  # shown by `bilstm plot study`
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(settings.objective_names))
    return study


def counted(study: optuna.Study) -> int:
    """Trials that count towards --trials: finished or running, less those an interruption
    cut short (they run again)."""
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))
    )


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed run as failed (interrupted), and queue the
    parameters of every interrupted trial once more; returns how many were queued."""
    from optuna.trial import TrialState

    storage = study._storage
    done = set(study.user_attrs.get("requeued", []))
    queued = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        elif not (t.state == TrialState.FAIL and t.user_attrs.get("interrupted")):
            continue
        if t.number in done:
            continue
        study.enqueue_trial(t.params, skip_if_exists=False)
        done.add(t.number)
        queued += 1
    study.set_user_attr("requeued", sorted(done))
    return queued


def work(settings: TuneSettings, worker: int, deadline: float | None) -> None:
    """Run trials until --trials are counted, --timeout passes or trials keep failing."""
    import optuna
    from optuna.trial import TrialState

    if settings.trial_threads:
        import torch

        torch.set_num_threads(settings.trial_threads)
    study = open_study(settings, worker)
    while counted(study) < settings.trials:
        remaining = None if deadline is None else deadline - time.time()
        if remaining is not None and remaining <= 0:
            break
        study.optimize(
            lambda trial: objective(trial, settings),
            n_trials=1,
            catch=(BiLSTMError,),
        )
        states = [t.state for t in study.get_trials(deepcopy=False)]
        failed = states.count(TrialState.FAIL)
        if TrialState.COMPLETE not in states and failed >= FAILURES_BEFORE_GIVING_UP:
            break
    del optuna


def _worker_main(settings: TuneSettings, worker: int, deadline: float | None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        work(settings, worker, deadline)


def search(settings: TuneSettings, resume: bool) -> optuna.Study:
    """Set up OUT (folds, settings), run the workers, and return the study."""
    settings.out.mkdir(parents=True, exist_ok=True)
    if resume:
        check_resumable(settings)
    else:
        _write_json(settings.out / SETTINGS, settings.identity())
    if settings.folds:
        from bilstm.models.tune_folds import write_folds

        write_folds(
            settings.task, settings.data, settings.folds, settings.seed, settings.out / FOLDS
        )
    study = open_study(settings)
    queued = requeue_interrupted(study)
    done = counted(study)
    _say(
        f"study {settings.out / STUDY_DB}: {done} of {settings.trials} trials done"
        + (f", {queued} interrupted trial(s) to run again" if queued else "")
        + (f"; {settings.jobs} workers" if settings.jobs > 1 else "")
    )
    deadline = None if settings.timeout is None else time.time() + settings.timeout
    workers = []
    context = multiprocessing.get_context("spawn")
    for index in range(1, settings.jobs):
        process = context.Process(target=_worker_main, args=(settings, index, deadline))
        process.start()
        workers.append(process)
    try:
        work(settings, 0, deadline)
    finally:
        for process in workers:
            process.join()
    return open_study(settings)


# -- results ---------------------------------------------------------------------------------


def trial_row(t: optuna.trial.FrozenTrial, settings: TuneSettings) -> dict[str, Any]:
    """A finished trial as the results table and results.json show it."""
    row: dict[str, Any] = {
        "trial": t.number,
        settings.metric: t.values[0] if t.values else None,
        "options": t.user_attrs.get("options", t.params),
        "best_epochs": t.user_attrs.get("best_epochs"),
        "seconds": t.user_attrs.get("seconds"),
    }
    if settings.folds:
        row["fold_scores"] = t.user_attrs.get("fold_scores")
    if settings.speed:
        row["items_per_s"] = t.user_attrs.get("items_per_s")
        row["int8_items_per_s"] = t.user_attrs.get("int8_items_per_s")
    return row


def ranked(study: optuna.Study, settings: TuneSettings) -> list[optuna.trial.FrozenTrial]:
    """Single objective: completed trials, best first. Speed: the Pareto front, most
    accurate first."""
    from optuna.trial import TrialState

    sign = -1.0 if settings.higher_is_better else 1.0
    if settings.speed:
        front = study.best_trials
        return sorted(front, key=lambda t: sign * t.values[0])
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: sign * t.values[0])


def best_config(t: optuna.trial.FrozenTrial, settings: TuneSettings) -> dict[str, Any]:
    """`bilstm train --config` values of a trial: the fixed options, then the trial's."""
    fixed = {k: v for k, v in settings.fixed.items() if k not in MACHINE_OPTIONS}
    return fixed | dict(t.user_attrs.get("options", t.params))


def finish(study: optuna.Study, settings: TuneSettings, console_file: Any = None) -> dict[str, Any]:
    """Write best.json, best/ and results.json, drop the other trials' models, and print
    the table of the best trials (or the Pareto front) on stdout."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    order = ranked(study, settings)
    if not order:
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
        why = f"; the last error: {errors[-1]}" if errors else ""
        raise TuneError(
            f"no trial completed ({states['fail']} failed, {states['pruned']} pruned){why}. "
            f"See {settings.out / TRIALS}/*/train.log"
        )
    best = order[0]
    config = best_config(best, settings)
    _write_json(settings.out / BEST_CONFIG, config)
    previous = _read_results(settings.out)
    final = _keep_best(best, settings, config, previous)
    keep = {t.number for t in order} if settings.speed else {best.number}
    _drop_models(settings, keep)
    results = {
        "task": settings.task,
        "metric": settings.metric,
        "higher_is_better": settings.higher_is_better,
        "objective": list(settings.objective_names),
        "folds": settings.folds,
        "trials": states,
        "best_trial": best.number,
        "best": trial_row(best, settings),
        "final": final,
        "ranked": [trial_row(t, settings) for t in order],
    }
    _write_json(settings.out / RESULTS, results)
    print_table(results, settings, console_file)
    return results


def _read_results(out: Path) -> dict[str, Any]:
    try:
        value = json.loads((out / RESULTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _keep_best(
    best: optuna.trial.FrozenTrial,
    settings: TuneSettings,
    config: dict[str, Any],
    previous: dict[str, Any],
) -> dict[str, Any]:
    """Put the best model in OUT/best: the best trial's checkpoint, or with --folds one
    trained with its settings on all the training data (dev only reports on it)."""
    target = settings.out / BEST_DIR
    if previous.get("best_trial") == best.number and (target / "config.json").is_file():
        return dict(previous.get("final") or {})
    source = settings.out / TRIALS / f"{best.number:04d}" / "checkpoint"
    if settings.folds:
        _say(
            f"training the best settings (trial {best.number}) on all of {settings.data} "
            f"into {target}; {settings.dev} reports on it"
        )
        args = [settings.task, "--data", str(settings.data), "--dev", str(settings.dev)]
        args += ["--out", str(target), "--force", *list(settings.train_args)]
        args += option_args(dict(best.user_attrs.get("options", best.params)))
        if settings.trial_threads:
            args += ["--threads", str(settings.trial_threads)]
        shutil.rmtree(target, ignore_errors=True)
        run_train(args, settings.out / TRIALS / f"{best.number:04d}" / "final.log")
    else:
        if not source.is_dir():
            raise TuneError(
                f"{source}: the best trial's checkpoint is gone; rerun it with "
                f"bilstm train --config {settings.out / BEST_CONFIG}"
            )
        shutil.rmtree(target, ignore_errors=True)
        if settings.speed or settings.keep_checkpoints:
            shutil.copytree(source, target)
        else:
            source.rename(target)
    summary = _summary(target)
    return {
        "checkpoint": str(target),
        "trained_on": "all training data" if settings.folds else "the trial's run",
        "dev_metrics": {
            k: v
            for k, v in (summary.get("dev_metrics") or {}).items()
            if isinstance(v, int | float)
        },
        "best_epoch": summary.get("best_epoch"),
    }


def _drop_models(settings: TuneSettings, keep: set[int]) -> None:
    """Delete the models of trials not in `keep` (logs stay), unless --keep-checkpoints."""
    if settings.keep_checkpoints or not (settings.out / TRIALS).is_dir():
        return
    for folder in sorted((settings.out / TRIALS).iterdir()):
        if folder.is_dir() and folder.name.isdigit() and int(folder.name) not in keep:
            _discard(folder, settings, keep_log=True)


def print_table(results: dict[str, Any], settings: TuneSettings, file: Any = None) -> None:
    """The best trials (or the Pareto front) as a table on stdout, then where things are."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout, soft_wrap=True, width=160)
    rows = results["ranked"][:10]
    title = "Pareto front" if settings.speed else "best trials"
    table = Table(title=f"{title} ({settings.metric}, {_trial_counts(results['trials'])})")
    table.add_column("trial", justify="right")
    table.add_column(settings.metric + (" (fold mean)" if settings.folds else ""), justify="right")
    if settings.speed:
        table.add_column("fp32 items/s", justify="right")
        table.add_column("int8 items/s", justify="right")
    table.add_column("best epoch", justify="right")
    table.add_column("options")
    for row in rows:
        cells = [str(row["trial"]), f"{row[settings.metric]:.4f}"]
        if settings.speed:
            cells += [_speed(row.get("items_per_s")), _speed(row.get("int8_items_per_s"))]
        epochs = row.get("best_epochs") or []
        cells.append(" ".join(str(e) for e in epochs))
        cells.append(_shown(row["options"]))
        table.add_row(*cells)
    console.print(table)
    final = results["final"]
    dev = final.get("dev_metrics", {})
    console.print(
        f"best: trial {results['best_trial']}; settings in {settings.out / BEST_CONFIG} "
        f"(bilstm train --config), model in {final.get('checkpoint')}"
        + (f"; dev {settings.metric} {dev[settings.metric]:.4f}" if settings.metric in dev else "")
    )


def _trial_counts(states: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in states.items() if n)


def _speed(value: Any) -> str:
    return f"{value:,.0f}" if isinstance(value, int | float) else "-"


def plain(value: Any) -> Any:
    """A JSON value for an option value from click (enum members, paths)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value
