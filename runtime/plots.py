"""`bilstm plot`: pictures of training and evaluation as PNG or SVG files (the plot extra).

- `bilstm plot curves CHECKPOINT_DIR -o curves.png`: training loss and dev metrics per epoch
  from the checkpoint's `history.jsonl` (and `summary.json` for the task and best epoch),
  the best epoch marked. Plain JSON: no torch, no model.
- `bilstm plot eval MODEL DATA -o eval.png`: the task's evaluation picture, drawn from what
  the model's own class computes: the confusion matrix (classify, `Classifier.evaluate`),
  per-tag accuracy and confusions (tag, `Tagger.tag`), forecast vs actual over a CSV with
  `--anomalies` marked (forecast, `Forecaster.series_records`), top-1/top-k accuracy by
  blank position and sentence length (cloze, `ClozeModel.fill` on the seeded blanks that
  `bilstm eval` asks).
- `bilstm plot study TUNE_DIR -o study.png`: an Optuna study (`bilstm tune`'s `study.db`, or
  any Optuna SQLite file): objective per trial with the best so far, parameter importances,
  and the Pareto front of accuracy vs items/s for a two-objective study. Read-only: the file
  is checked to hold Optuna's tables (opened read-only) before Optuna opens it.

The format comes from the output's suffix (.png, .svg); `--width/--height` (inches) and
`--dpi` fix the size exactly (no tight bounding box). Figures are built with
`matplotlib.figure.Figure` and saved through the Agg/SVG canvases: no pyplot, no display, no
global state. The output is checked before any work (`core/outpaths.py`: never an input,
never a folder) and written atomically (`core/atomic.py`).

This module imports only typer at load time: the umbrella registers `plot_app()` without
paying for matplotlib (or optuna), which is imported when a plot is drawn. What differs
between tasks is looked up once in `CURVES` and `EVAL_PLOTS` (keyed by the task name),
never branched on.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bilstm.core.errors import BiLSTMError, DataError, InputError
from bilstm.runtime.session import Device

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from bilstm.runtime.model import BiLSTM
    from bilstm.runtime.tasks import Classifier, ClozeModel, Forecaster, Tagger

FORMATS = {".png": "png", ".svg": "svg"}
"""Output suffix -> matplotlib format."""

HISTORY = "history.jsonl"
SUMMARY = "summary.json"
CONFIG = "config.json"

DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_DPI = 8.0, 5.0, 100.0
EXIT_USAGE = 2


# -- training curves ------------------------------------------------------------------------


@dataclass(frozen=True)
class CurveSpec:
    """The dev metrics a task's curves show: the first picks the best epoch."""

    metrics: tuple[str, ...]
    higher_is_better: bool


CURVES: dict[str, CurveSpec] = {
    "classify": CurveSpec(("accuracy", "macro_f1"), higher_is_better=True),
    "tag": CurveSpec(("accuracy", "oov_accuracy"), higher_is_better=True),
    "forecast": CurveSpec(("rmse", "mae"), higher_is_better=False),
    "cloze": CurveSpec(("top1", "top5"), higher_is_better=True),
}
"""Task name -> its curves (the training side's picking metric first, as `bilstm train`
reports it: accuracy, accuracy, RMSE, top-1)."""


@dataclass
class History:
    """A checkpoint's per-epoch rows, its task (if known) and best epoch (if recorded)."""

    rows: list[dict[str, Any]]
    task: str | None
    best_epoch: int | None
    skipped: list[str] = field(default_factory=list)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_history(folder: Path) -> History:
    """The history of a checkpoint folder; damaged lines are skipped (and listed), as
    training's own reader does: history.jsonl is informational."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "does not exist" if not folder.exists() else "is not a folder"
        raise InputError(f"{folder}: {what}; give a checkpoint folder (bilstm train --out)")
    path = folder / HISTORY
    if not path.is_file():
        raise InputError(
            f"{folder}: no {HISTORY}; is it a checkpoint folder written by bilstm train?"
        )
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            row = None
        epoch = row.get("epoch") if isinstance(row, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            skipped.append(f"{path}:{number}")
            continue
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no epoch rows (a JSON object with an 'epoch' per line)")
    rows.sort(key=lambda r: int(r["epoch"]))
    summary = _read_json_object(folder / SUMMARY) if (folder / SUMMARY).is_file() else {}
    task = summary.get("task")
    if not isinstance(task, str) and (folder / CONFIG).is_file():
        task = _read_json_object(folder / CONFIG).get("task")
    best = summary.get("best_epoch")
    return History(
        rows=rows,
        task=task if isinstance(task, str) else None,
        best_epoch=best if isinstance(best, int) and not isinstance(best, bool) else None,
        skipped=skipped,
    )


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _curve_spec(history: History) -> CurveSpec:
    """The task's curves; without a known task, the first whose picking metric the rows
    have; failing that, every numeric dev metric (higher is better)."""
    if history.task in CURVES:
        return CURVES[history.task]
    for spec in CURVES.values():
        if any(f"dev_{spec.metrics[0]}" in r for r in history.rows):
            return spec
    names = sorted(
        {k[4:] for r in history.rows for k, v in r.items() if k.startswith("dev_") and _number(v)}
    )
    if not names:
        raise DataError("the history has no dev metrics (dev_* numbers) to plot")
    return CurveSpec(tuple(names), higher_is_better=True)


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in rows:
        value = _number(r.get(key))
        if value is not None:
            xs.append(int(r["epoch"]))
            ys.append(value)
    return xs, ys


def curves_figure(folder: Path, width: float, height: float) -> Figure:
    """Two panels: training loss per epoch, and the task's dev metrics per epoch; the best
    epoch (summary.json, or the best value of the picking metric) is marked in both."""
    from matplotlib.figure import Figure

    history = read_history(folder)
    spec = _curve_spec(history)
    rows = history.rows
    fig = Figure(figsize=(width, height), layout="constrained")
    loss_ax, dev_ax = fig.subplots(1, 2)
    xs, ys = _series(rows, "train_loss")
    if xs:
        loss_ax.plot(xs, ys, marker="o", label="train loss")
    else:
        loss_ax.text(
            0.5, 0.5, "no train_loss in the history", ha="center", transform=loss_ax.transAxes
        )
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="loss")
    plotted = []
    for name in spec.metrics:
        xs, ys = _series(rows, f"dev_{name}")
        if xs:
            dev_ax.plot(xs, ys, marker="o", label=f"dev {name}")
            plotted.append(name)
    if not plotted:
        raise DataError(
            f"{Path(folder) / HISTORY}: no dev metric among {[f'dev_{m}' for m in spec.metrics]}"
        )
    best = history.best_epoch
    if best is None:
        xs, ys = _series(rows, f"dev_{plotted[0]}")
        pick = max if spec.higher_is_better else min
        best = xs[ys.index(pick(ys))]
    for ax in (loss_ax, dev_ax):
        ax.axvline(best, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best}")
        ax.legend(loc="best", fontsize="small")
        ax.xaxis.get_major_locator().set_params(integer=True)
    xs, ys = _series(rows, f"dev_{plotted[0]}")
    if best in xs:
        dev_ax.plot(
            [best],
            [ys[xs.index(best)]],
            marker="*",
            markersize=14,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
        )
    direction = "higher" if spec.higher_is_better else "lower"
    dev_ax.set(title=f"dev metrics ({plotted[0]}: {direction} is better)", xlabel="epoch")
    title = f"{Path(folder).name}: {history.task or 'unknown task'}, {len(rows)} epochs"
    fig.suptitle(title)
    return fig


# -- evaluation pictures --------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOptions:
    """What `plot eval` asks of a task's picture (each read only by the task it applies to)."""

    batch_size: int
    tag_column: str = "upos"
    top_k: int = 5
    anomalies: bool = False
    threshold: float = 3.0
    step: int = 1


@dataclass(frozen=True)
class EvalPlot:
    """A task's evaluation picture and the `plot eval` options it reads."""

    draw: Callable[[Any, Path, EvalOptions, Figure], None]
    options: frozenset[str]


def _heatmap(
    fig: Figure, ax: Axes, matrix: Any, rows: Sequence[str], cols: Sequence[str], cmap: str
) -> None:
    """A count matrix with its numbers written in the non-zero cells, and a colour bar."""
    import numpy as np

    values = np.asarray(matrix, dtype=np.float64)
    masked = np.ma.masked_less_equal(values, 0)
    image = ax.imshow(masked, cmap=cmap, aspect="auto", vmin=0, vmax=max(1.0, values.max()))
    fig.colorbar(image, ax=ax, label="count")
    ax.set_xticks(range(len(cols)), cols, rotation=90 if len(cols) > 4 else 0)
    ax.set_yticks(range(len(rows)), rows)
    small = "xx-small" if len(rows) > 12 else "small"
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if values[i, j] > 0:
                dark = values[i, j] > 0.6 * values.max()
                ax.text(
                    j,
                    i,
                    f"{int(values[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=small,
                    color="white" if dark else "black",
                )


def _classify(model: Classifier, data: Path, opts: EvalOptions, fig: Figure) -> None:
    """The confusion matrix of `Classifier.evaluate` (rows gold, columns predicted)."""
    metrics = model.evaluate(data, opts.batch_size)
    ax = fig.subplots()
    _heatmap(fig, ax, metrics["confusion"], model.labels, model.labels, "Blues")
    ax.set(xlabel="predicted", ylabel="gold")
    no_tokens = f", {metrics['no_tokens']} without tokens" if metrics.get("no_tokens") else ""
    ax.set_title(
        f"confusion matrix: accuracy {metrics['accuracy']:.3f}, macro-F1 "
        f"{metrics['macro_f1']:.3f} ({metrics['count']} texts{no_tokens})"
    )


def _tag(model: Tagger, data: Path, opts: EvalOptions, fig: Figure) -> None:
    """Per-tag accuracy (by gold tag, with its support) and the confusions between tags."""
    import numpy as np

    from bilstm.core.datasets import read_tagged

    sentences = read_tagged(data, opts.tag_column)
    known = set(model.labels)
    unknown = sorted({t for s in sentences for t in s.tags} - known)
    if unknown:
        raise DataError(
            f"{data}: gold tags {unknown[:10]} in --tag-column {opts.tag_column} are not among "
            f"the model's {len(model.labels)} tags; is it the column the model was trained on?"
        )
    preds = model.tag([s.tokens for s in sentences], opts.batch_size)
    index = {t: i for i, t in enumerate(model.labels)}
    counts = np.zeros((len(index), len(index)), dtype=np.int64)
    for s, p in zip(sentences, preds, strict=True):
        for g, q in zip(s.tags, p.tags, strict=False):  # a cut sentence keeps its head
            counts[index[g], index[q]] += 1
    total = int(counts.sum())
    if total == 0:
        raise DataError(f"{data}: no tagged tokens to evaluate")
    support = counts.sum(axis=1)
    shown = [i for i in np.argsort(-support, kind="stable") if support[i] > 0]
    names = [model.labels[i] for i in shown]
    accuracy = [counts[i, i] / support[i] for i in shown]
    bars_ax, conf_ax = fig.subplots(1, 2, width_ratios=(1, 1.3))
    bars = bars_ax.barh(range(len(shown)), accuracy, color="tab:blue")
    bars_ax.set_yticks(
        range(len(shown)), [f"{n} ({support[i]})" for n, i in zip(names, shown, strict=True)]
    )
    bars_ax.invert_yaxis()
    bars_ax.set(xlim=(0, 1.05), xlabel="accuracy", title="accuracy per gold tag (support)")
    bars_ax.bar_label(bars, fmt="%.2f", fontsize="x-small", padding=2)
    used = sorted(
        {i for i in range(len(index)) if counts[i].sum() or counts[:, i].sum()},
        key=lambda i: -support[i],
    )
    confusions = counts[np.ix_(used, used)].copy()
    np.fill_diagonal(confusions, 0)
    tags = [model.labels[i] for i in used]
    _heatmap(fig, conf_ax, confusions, tags, tags, "Reds")
    conf_ax.set(xlabel="predicted", ylabel="gold", title="confusions (correct tags left out)")
    if not confusions.any():
        conf_ax.text(0.5, 0.5, "no confusions", ha="center", transform=conf_ax.transAxes)
    fig.suptitle(
        f"token accuracy {np.trace(counts) / total:.3f} on {total} tokens, "
        f"{len(sentences)} sentences"
    )


def _forecast(model: Forecaster, data: Path, opts: EvalOptions, fig: Figure) -> None:
    """The actual target over the CSV and the forecast `opts.step` rows ahead of each window,
    with `--anomalies` (z-scores beyond `--threshold`) marked and the z-scores below."""
    import numpy as np

    from bilstm.runtime.taskspec import RunOptions

    if not 1 <= opts.step <= model.horizon:
        raise InputError(f"--step must be within 1..{model.horizon} (the model's horizon)")
    values, lines = model.read_series(str(data))
    run = RunOptions(
        batch_size=opts.batch_size,
        rolling=True,
        anomalies=opts.anomalies,
        threshold=opts.threshold,
    )
    records = model.series_records(values, lines, run)
    position = {line: i for i, line in enumerate(lines)}
    h = opts.step - 1
    xs, fc, zs, flagged = [], [], [], []
    for rec in records:
        at = position[rec["row"]] + opts.step  # the row the step-h forecast is for
        if at >= len(lines):
            continue
        xs.append(lines[at])
        fc.append(rec["forecast"][h])
        if opts.anomalies:
            zs.append(rec["zscores"][h])
            flagged.append(bool(rec["anomalies"][h]))
    if not xs:
        raise DataError(
            f"{data}: {len(lines)} rows leave no actual value {opts.step} row(s) after a window "
            f"of {model.window}; give at least {model.window + opts.step} rows"
        )
    target = values[:, model.columns.index(model.target)].astype(np.float64)
    actual = np.asarray([target[position[x]] for x in xs])
    rmse = float(np.sqrt(np.mean((actual - np.asarray(fc)) ** 2)))
    axes = (
        fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        if opts.anomalies
        else [fig.subplots()]
    )
    ax = axes[0]
    ax.plot(lines, target, color="black", linewidth=1, label=f"actual {model.target}")
    ax.plot(xs, fc, color="tab:orange", linewidth=1, label=f"forecast, {opts.step} ahead")
    title = f"{model.target}: forecast {opts.step} row(s) ahead, RMSE {rmse:.4g} on {len(xs)} rows"
    if opts.anomalies:
        hits = [i for i, f in enumerate(flagged) if f]
        ax.scatter(
            [xs[i] for i in hits],
            [actual[i] for i in hits],
            color="red",
            zorder=3,
            label=f"anomaly (|z| > {opts.threshold:g}): {len(hits)}",
        )
        title += f", {len(hits)} anomalies"
        z_ax = axes[1]
        z_ax.plot(xs, zs, color="tab:purple", linewidth=1, label="z-score")
        for sign in (1, -1):
            z_ax.axhline(sign * opts.threshold, color="red", linestyle="--", linewidth=1)
        z_ax.set(ylabel="z-score", xlabel="CSV line")
    else:
        ax.set_xlabel("CSV line")
    ax.set(ylabel=model.target, title=title)
    ax.legend(loc="best", fontsize="small")


POSITION_BINS = (1, 2, 3, 4, 5, 6, 11, 21)
LENGTH_BINS = (2, 6, 11, 16, 21, 31)
"""Lower edges of the buckets (1-based blank position; sentence length in tokens)."""


def _bucket(value: int, edges: Sequence[int]) -> int:
    return max(i for i, e in enumerate(edges) if value >= e)


def _bucket_names(edges: Sequence[int]) -> list[str]:
    names = []
    for i, low in enumerate(edges):
        high = edges[i + 1] - 1 if i + 1 < len(edges) else None
        names.append(f"{low}+" if high is None else str(low) if high == low else f"{low}-{high}")
    return names


def cloze_questions(model: ClozeModel, data: Path) -> list[tuple[str, str, int, int]]:
    """The blanks `ClozeModel.evaluate` asks (same seed, same lines, same words): per
    question the text with `___` in place of the word, the word, its 1-based position and
    the sentence length in tokens."""
    from bilstm.core.preprocess import BLANK

    vocab = model.metadata.vocabulary
    questions = []
    for q in model.questions(data):
        toks = [BLANK if i == q.position else t for i, t in enumerate(q.tokens)]
        questions.append((" ".join(toks), vocab[q.answer], q.position + 1, len(toks)))
    return questions


def _cloze(model: ClozeModel, data: Path, opts: EvalOptions, fig: Figure) -> None:
    """Top-1 and top-k accuracy by the blank's position and by the sentence's length."""
    questions = cloze_questions(model, data)
    if not questions:
        raise DataError(f"{data}: no line has two or more tokens with a known word to blank")
    preds = model.fill([q[0] for q in questions], max(opts.top_k, 1), opts.batch_size)
    hits = []
    for (_, word, _, _), p in zip(questions, preds, strict=True):
        words = [w for w, _ in p.candidates]
        hits.append((words[:1] == [word], word in words[: opts.top_k]))
    panels = (
        ("blank position (token, 1 = first)", POSITION_BINS, 2),
        ("sentence length (tokens)", LENGTH_BINS, 3),
    )
    axes = fig.subplots(1, 2, sharey=True)
    for ax, (label, edges, field_index) in zip(axes, panels, strict=True):
        groups: dict[int, list[tuple[bool, bool]]] = {}
        for q, hit in zip(questions, hits, strict=True):
            groups.setdefault(_bucket(int(q[field_index]), edges), []).append(hit)
        keys = sorted(groups)
        names = _bucket_names(edges)
        ticks = [f"{names[k]}\n(n={len(groups[k])})" for k in keys]
        xs = list(range(len(keys)))
        for which, name in ((0, "top-1"), (1, f"top-{opts.top_k}")):
            ys = [sum(h[which] for h in groups[k]) / len(groups[k]) for k in keys]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xticks(xs, ticks, fontsize="small")
        ax.set(xlabel=label, ylim=(-0.02, 1.02))
        ax.legend(loc="best", fontsize="small")
    axes[0].set_ylabel("accuracy")
    n = len(hits)
    fig.suptitle(
        f"fill in the blank: top-1 {sum(h[0] for h in hits) / n:.3f}, top-{opts.top_k} "
        f"{sum(h[1] for h in hits) / n:.3f} on {n} seeded blanks"
    )


EVAL_PLOTS: dict[str, EvalPlot] = {
    "classify": EvalPlot(_classify, frozenset()),
    "tag": EvalPlot(_tag, frozenset({"tag_column"})),
    "forecast": EvalPlot(_forecast, frozenset({"anomalies", "threshold", "step"})),
    "cloze": EvalPlot(_cloze, frozenset({"top_k"})),
}
"""Task name -> its evaluation picture and the options that picture reads."""


def _eval_plot(model: BiLSTM, given: set[str]) -> EvalPlot:
    """The model's picture; an option it would ignore is refused, naming who takes it."""
    try:
        plot = EVAL_PLOTS[model.task]
    except KeyError:
        raise InputError(f"no evaluation plot for {model.task} models") from None
    for name in sorted(given - plot.options):
        takers = [t for t, p in EVAL_PLOTS.items() if name in p.options]
        raise InputError(
            f"--{name.replace('_', '-')} applies to {'/'.join(takers)} models only; "
            f"this is a {model.task} model"
        )
    return plot


def eval_figure(
    model: BiLSTM,
    data: Path,
    opts: EvalOptions,
    width: float,
    height: float,
    given: Sequence[str] = (),
) -> Figure:
    """The task's evaluation picture of `model` on `data` (its training format)."""
    from matplotlib.figure import Figure

    plot = _eval_plot(model, set(given))
    if not Path(data).is_file():
        raise InputError(f"{data}: no such file")
    fig = Figure(figsize=(width, height), layout="constrained")
    plot.draw(model, Path(data), opts, fig)
    return fig


# -- Optuna studies (bilstm tune) -----------------------------------------------------------

STUDY_DB = "study.db"
PREFERRED_STUDY = "bilstm-tune"


@dataclass
class StudyView:
    """What the study picture needs of an Optuna study, read without writing to it."""

    name: str
    metric_names: list[str]
    directions: list[str]
    """"maximize" or "minimize" per objective."""
    complete: list[Any]
    """Completed FrozenTrials, by number."""
    pruned: list[Any]
    importances: dict[str, float] | None
    importance_note: str
    front: list[Any]
    """Pareto-optimal trials (multi-objective), by first objective."""


def study_path(target: Path) -> Path:
    """The SQLite file of a study: `target` itself, or `target/study.db` (a tune folder).

    Checked to be an SQLite database with Optuna's tables, opened read-only, before Optuna
    sees it: Optuna creates what is missing, and a plot must never write to its input."""
    import sqlite3

    target = Path(target)
    path = target / STUDY_DB if target.is_dir() else target
    if not path.is_file():
        raise InputError(
            f"{target}: no Optuna study here (expected {STUDY_DB} in a bilstm tune folder, "
            "or an SQLite study file)"
        )
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{path}: not an SQLite database ({exc})") from None
    if not {"studies", "trials"} <= tables:
        raise DataError(f"{path}: an SQLite database without an Optuna study in it")
    return path


def read_study(target: Path) -> StudyView:
    """The study in `target` (a bilstm tune folder or an Optuna SQLite file)."""
    import optuna
    from optuna.trial import TrialState

    path = study_path(target)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path.resolve()}"
    names = optuna.study.get_all_study_names(storage)
    if not names:
        raise DataError(f"{path}: holds no study")
    name = PREFERRED_STUDY if PREFERRED_STUDY in names else names[0]
    if len(names) > 1 and PREFERRED_STUDY not in names:
        raise DataError(f"{path}: holds several studies {names}; cannot tell which to draw")
    study = optuna.load_study(study_name=name, storage=storage)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise DataError(f"{path}: study {name!r} has no completed trial to draw yet")
    directions = [d.name.lower() for d in study.directions]
    metric_names = list(study.metric_names or [f"objective {i}" for i in range(len(directions))])
    importances: dict[str, float] | None = None
    note = ""
    searched = {k for t in complete for k in t.params}
    if len(complete) < 2 or not searched:
        note = "importances need 2 completed trials with searched parameters"
    else:
        # PED-ANOVA rates what leads to *low* values: negate a maximised objective.
        sign = -1.0 if directions[0] == "maximize" else 1.0
        try:
            with warnings.catch_warnings():  # its "low values" notice: handled by `sign`
                warnings.simplefilter("ignore", UserWarning)
                importances = optuna.importance.get_param_importances(
                    study,
                    evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                    target=lambda t: sign * t.values[0],
                )
        except (ValueError, RuntimeError) as exc:
            note = f"no importances: {exc}"
    return StudyView(
        name=name,
        metric_names=metric_names,
        directions=directions,
        complete=sorted(complete, key=lambda t: t.number),
        pruned=study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)),
        importances=importances,
        importance_note=note,
        front=sorted(study.best_trials, key=lambda t: t.values[0]) if len(directions) > 1 else [],
    )


def study_figure(target: Path, width: float, height: float) -> Figure:
    """The study's history (every completed trial, pruned ones at their last reported value,
    the best so far as a line) and its parameter importances; for two objectives also the
    Pareto front of the first against the second (int8 items/s marked when recorded)."""
    from matplotlib.figure import Figure

    view = read_study(target)
    multi = len(view.directions) > 1
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, 3 if multi else 2)
    metric, maximize = view.metric_names[0], view.directions[0] == "maximize"
    hist_ax, imp_ax = axes[0], axes[1]
    xs = [t.number for t in view.complete]
    ys = [t.values[0] for t in view.complete]
    hist_ax.plot(xs, ys, marker="o", linestyle="none", label="completed")
    pruned = [
        (t.number, t.intermediate_values[max(t.intermediate_values)])
        for t in view.pruned
        if t.intermediate_values
    ]
    if pruned:
        hist_ax.plot(
            [p[0] for p in pruned],
            [p[1] for p in pruned],
            marker="x",
            linestyle="none",
            color="grey",
            label="pruned (last value)",
        )
    best, running = [], None
    for y in ys:
        running = y if running is None else (max(running, y) if maximize else min(running, y))
        best.append(running)
    hist_ax.step(xs, best, where="post", color="tab:red", label="best so far")
    hist_ax.set(
        title=f"history: {metric} ({'higher' if maximize else 'lower'} is better)",
        xlabel="trial",
        ylabel=metric,
    )
    hist_ax.legend(loc="best", fontsize="small")
    hist_ax.xaxis.get_major_locator().set_params(integer=True)
    if view.importances:
        names = list(view.importances)[::-1]
        imp_ax.barh(range(len(names)), [view.importances[n] for n in names], color="tab:blue")
        imp_ax.set_yticks(range(len(names)), names)
        imp_ax.set(title=f"importance for {metric}", xlabel="importance (sums to 1)")
    else:
        imp_ax.text(
            0.5,
            0.5,
            view.importance_note,
            ha="center",
            va="center",
            wrap=True,
            transform=imp_ax.transAxes,
        )
        imp_ax.set(title=f"importance for {metric}")
        imp_ax.set_axis_off()
    if multi:
        _pareto(axes[2], view)
    fig.suptitle(f"study {view.name}: {len(view.complete)} completed, {len(view.pruned)} pruned")
    return fig


def _pareto(ax: Axes, view: StudyView) -> None:
    speed_name, metric = view.metric_names[1], view.metric_names[0]
    ax.plot(
        [t.values[1] for t in view.complete],
        [t.values[0] for t in view.complete],
        marker="o",
        linestyle="none",
        color="lightgrey",
        label="trials",
    )
    front = sorted(view.front, key=lambda t: t.values[1])
    ax.plot(
        [t.values[1] for t in front],
        [t.values[0] for t in front],
        marker="o",
        color="tab:red",
        label="Pareto front (fp32)",
    )
    int8 = [
        (t.user_attrs["int8_items_per_s"], t.values[0])
        for t in front
        if isinstance(t.user_attrs.get("int8_items_per_s"), int | float)
    ]
    if int8:
        ax.plot(
            [p[0] for p in int8],
            [p[1] for p in int8],
            marker="^",
            linestyle="none",
            color="tab:green",
            label="front, int8",
        )
    for t in front:
        ax.annotate(
            str(t.number),
            (t.values[1], t.values[0]),
            fontsize="x-small",
            textcoords="offset points",
            xytext=(3, 3),
        )
    ax.set(title=f"Pareto front: {metric} vs {speed_name}", xlabel=speed_name, ylabel=metric)
    ax.legend(loc="best", fontsize="small")


# -- files ----------------------------------------------------------------------------------


def output_format(out: Path) -> str:
    """matplotlib's format for the output's suffix; InputError for any other suffix."""
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(
            f"{out}: the output must end in {' or '.join(FORMATS)} (the format comes from "
            "the suffix)"
        )
    return fmt


def check_output(out: Path, inputs: Sequence[Path | str]) -> str:
    """Check the output before any work (suffix, not an input, not a folder); its format."""
    from bilstm.core.outpaths import check_output_file

    fmt = output_format(out)
    check_output_file(Path(out), inputs, flag="--output")
    return fmt


def save_figure(fig: Figure, out: Path, dpi: float, fmt: str | None = None) -> None:
    """Write `fig` to `out` atomically: an existing file stays as it was until the new one is
    complete. The size is exactly the figure's (width x dpi by height x dpi pixels)."""
    from bilstm.core.atomic import atomic_path

    fmt = fmt or output_format(out)
    metadata = {"Date": None} if fmt == FORMATS[".svg"] else None
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)


def _check_size(width: float, height: float, dpi: float) -> None:
    pixels = width * dpi * height * dpi
    if pixels > 100_000_000:
        raise InputError(
            f"--width {width:g} x --height {height:g} inches at --dpi {dpi:g} is "
            f"{pixels / 1e6:.0f} megapixels; keep it under 100"
        )


# -- command line ---------------------------------------------------------------------------


OutOpt = Annotated[
    Path,
    typer.Option("--output", "-o", help="Image file to write: .png or .svg (from the suffix)."),
]
WidthOpt = Annotated[float, typer.Option(min=1.0, max=100.0, help="Width in inches.")]
HeightOpt = Annotated[float, typer.Option(min=1.0, max=100.0, help="Height in inches.")]
DpiOpt = Annotated[float, typer.Option(min=10.0, max=1200.0, help="Pixels per inch.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]


@contextlib.contextmanager
def _plot_errors(debug: bool, output: Path) -> Iterator[None]:
    """One-line errors and exit 2, as the other commands; the plot extra's absence too."""
    from bilstm.runtime.cli import user_errors

    with user_errors(debug, output):
        try:
            yield
        except ImportError as exc:
            if debug or "matplotlib" not in str(exc.name or exc):
                raise
            raise BiLSTMError(
                "`bilstm plot` needs the plot extra (matplotlib is not installed): "
                "pip install 'bilstm[plot]'"
            ) from None


def curves(
    checkpoint: Annotated[
        Path, typer.Argument(help="Checkpoint folder (bilstm train --out).", show_default=False)
    ],
    output: OutOpt = Path("curves.png"),
    width: WidthOpt = DEFAULT_WIDTH,
    height: HeightOpt = DEFAULT_HEIGHT,
    dpi: DpiOpt = DEFAULT_DPI,
    debug: DebugOpt = False,
) -> None:
    """Training loss and dev metrics per epoch from a checkpoint's history, best epoch marked."""
    with _plot_errors(debug, output):
        fmt = check_output(output, [checkpoint / HISTORY, checkpoint / SUMMARY])
        _check_size(width, height, dpi)
        history = read_history(checkpoint)
        for where in history.skipped:
            typer.echo(f"warning: {where}: skipped a line that is not an epoch row", err=True)
        fig = curves_figure(checkpoint, width, height)
        save_figure(fig, output, dpi, fmt)
    typer.echo(f"wrote {output}", err=True)


def evaluation(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Argument(metavar="MODEL", help="Path to a .onnx file, or a built-in model name."),
    ],
    data: Annotated[
        Path,
        typer.Argument(help="Labelled data in the task's training format.", show_default=False),
    ],
    output: OutOpt = Path("eval.png"),
    width: WidthOpt = DEFAULT_WIDTH,
    height: HeightOpt = DEFAULT_HEIGHT,
    dpi: DpiOpt = DEFAULT_DPI,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="[default: 64 on CPU, 1024 on CUDA]")
    ] = None,
    tag_column: Annotated[str, typer.Option(help="tag: upos, xpos or a column number.")] = "upos",
    top_k: Annotated[int, typer.Option(min=1, help="cloze: the k of top-k accuracy.")] = 5,
    anomalies: Annotated[
        bool, typer.Option("--anomalies", help="forecast: mark rows beyond --threshold.")
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=0.0, help="forecast: z-score that flags an anomaly.")
    ] = 3.0,
    step: Annotated[
        int, typer.Option(min=1, help="forecast: plot the forecast this many rows ahead.")
    ] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Intra-op threads (default: one per core).")
    ] = None,
    device: Annotated[Device, typer.Option(help="Execution device; auto prefers CUDA.")] = (
        Device.auto
    ),
    debug: DebugOpt = False,
) -> None:
    """The task's evaluation picture of MODEL on DATA (its training format).

    classify: confusion matrix. tag: per-tag accuracy and confusions. forecast: forecast vs
    actual, --anomalies marked. cloze: top-1/top-k accuracy by blank position and length.
    """
    from bilstm.runtime.cli import _given
    from bilstm.runtime.model import BiLSTM

    task_options = ("tag_column", "top_k", "anomalies", "threshold", "step")
    given = [name for name in task_options if _given(ctx, name)]
    with _plot_errors(debug, output):
        inputs = [p for p in (model, data) if Path(p).exists()]
        fmt = check_output(output, inputs)
        _check_size(width, height, dpi)
        loaded = BiLSTM.load(model, device=device, threads=threads)
        check_output(output, [loaded.path, data])  # a built-in name resolved to its file
        opts = EvalOptions(
            batch_size=batch_size or loaded.batch_size,
            tag_column=tag_column,
            top_k=top_k,
            anomalies=anomalies,
            threshold=threshold,
            step=step,
        )
        fig = eval_figure(loaded, data, opts, width, height, given)
        save_figure(fig, output, dpi, fmt)
    typer.echo(f"wrote {output}", err=True)


def study(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A bilstm tune folder (--out) or an Optuna SQLite study file.",
            show_default=False,
        ),
    ],
    output: OutOpt = Path("study.png"),
    width: WidthOpt = 12.0,
    height: HeightOpt = DEFAULT_HEIGHT,
    dpi: DpiOpt = DEFAULT_DPI,
    debug: DebugOpt = False,
) -> None:
    """An Optuna study's history and parameter importances (and its Pareto front when it has
    two objectives, as bilstm tune --objective accuracy,speed), read-only (needs optuna)."""
    with _plot_errors(debug, output):
        db = folder / STUDY_DB if folder.is_dir() else folder
        fmt = check_output(output, [db])
        _check_size(width, height, dpi)
        try:
            fig = study_figure(folder, width, height)
        except ImportError as exc:
            if "optuna" not in str(exc.name or exc):
                raise
            raise BiLSTMError(
                "`bilstm plot study` needs optuna (the tune extra): pip install 'bilstm[tune]'"
            ) from None
        save_figure(fig, output, dpi, fmt)
    typer.echo(f"wrote {output}", err=True)


def plot_app() -> typer.Typer:
    """`bilstm plot`: its subcommands `curves`, `eval` and `study` (register with `add_typer`)."""
    app = typer.Typer(
        help=(
            "Draw training curves, a model's evaluation or a tuning study as PNG/SVG "
            "(needs the plot extra)."
        ),
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.command("curves")(curves)
    app.command("eval")(evaluation)
    app.command("study")(study)
    return app
