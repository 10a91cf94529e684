"""`bilstm plot`: training curves and evaluation pictures as real PNG/SVG files.

Each test checks the file itself (a PNG that decodes to width x dpi by height x dpi pixels,
an SVG of width x 72 by height x 72 points with the expected axes) and the figure's content
(axes, series, what they show) against the model's own numbers.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from typer.testing import CliRunner

from bilstm.runtime import BiLSTM
from bilstm.runtime.plots import (
    EVAL_PLOTS,
    EvalOptions,
    cloze_questions,
    curves_figure,
    eval_figure,
    plot_app,
    study_figure,
)
from bilstm.runtime.taskspec import RunOptions

REPO = Path(__file__).parents[1]
EXAMPLES = REPO / "examples"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CLASSIFY_DATA = (
    "positive\tA gorgeous, witty, seductive movie.\n"
    "negative\tThe plot is thin and the jokes fall flat.\n"
    "negative\tA dull, overlong mess.\n"
    "positive\tOne of the most original films of the year.\n"
    "negative\tnot good at all\n"
)
TAG_DATA = (
    "The\tDET\ncat\tNOUN\nsat\tVERB\non\tADP\nthe\tDET\nmat\tNOUN\n.\tPUNCT\n\n"
    "She\tPRON\nlikes\tVERB\ngreen\tADJ\ntea\tNOUN\n.\tPUNCT\n\n"
    "Run\tVERB\nfast\tADV\n!\tPUNCT\n"
)


def run_plot(*args: str) -> Any:
    return CliRunner().invoke(plot_app(), [str(a) for a in args])


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the file decodes as a PNG."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pixels = matplotlib.image.imread(path)  # decodes every chunk: a truncated file fails
    assert pixels.shape[:2] == (height, width)
    assert np.ptp(pixels[..., :3]) > 0  # something was drawn
    return width, height


def svg_info(path: Path) -> tuple[str, str, int]:
    """(width, height, number of axes) of a matplotlib SVG, parsed as XML."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    axes = [g for g in root.iter() if (g.get("id") or "").startswith("axes_")]
    return root.get("width", ""), root.get("height", ""), len(axes)


def labelled_lines(ax: Any) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


# -- training curves -------------------------------------------------------------------------


def write_checkpoint(
    folder: Path, rows: list[dict[str, Any]], summary: dict[str, Any] | None
) -> Path:
    folder.mkdir()
    (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    rows = [
        {"epoch": e, "train_loss": loss, "dev_accuracy": acc, "dev_macro_f1": f1, "lr": 0.01}
        for e, loss, acc, f1 in [
            (1, 0.69, 0.55, 0.50),
            (2, 0.60, 0.71, 0.70),
            (3, 0.52, 0.66, 0.64),
        ]
    ]
    return write_checkpoint(
        tmp_path / "ckpt", rows, {"task": "classify", "best_epoch": 2, "dev_metrics": {}}
    )


def test_curves_png_has_the_asked_size(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = run_plot("curves", checkpoint, "-o", out, "--width", 6, "--height", 4, "--dpi", 50)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (300, 200)
    assert not list(tmp_path.glob(".*.part"))


def test_curves_show_loss_dev_metrics_and_the_best_epoch(checkpoint: Path) -> None:
    fig = curves_figure(checkpoint, 8, 5)
    loss_ax, dev_ax = fig.axes
    assert labelled_lines(loss_ax) == ["train loss", "best epoch 2"]
    assert labelled_lines(dev_ax) == ["dev accuracy", "dev macro_f1", "best epoch 2"]
    loss = loss_ax.get_lines()[0]
    assert list(loss.get_xdata()) == [1, 2, 3]
    assert list(loss.get_ydata()) == [0.69, 0.60, 0.52]
    best_line = dev_ax.get_lines()[2]
    assert list(best_line.get_xdata()) == [2, 2]
    star = dev_ax.get_lines()[3]  # the best epoch's point on the picking metric
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([2], [0.71])


def test_curves_svg(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.svg"
    result = run_plot("curves", checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    assert svg_info(out) == ("576pt", "360pt", 2)


def test_curves_without_summary_pick_the_best_epoch_by_the_task_metric(tmp_path: Path) -> None:
    """No summary.json: a forecast history (dev_rmse) is recognised, lower is better; damaged
    lines are skipped with a warning, as training's reader does."""
    rows = [
        {"epoch": e, "train_loss": 1.0 / e, "dev_rmse": r, "dev_mae": r * 0.8}
        for e, r in [(1, 0.9), (2, 0.4), (3, 0.5), (4, 0.45)]
    ]
    folder = write_checkpoint(tmp_path / "fc", rows, None)
    with (folder / "history.jsonl").open("a") as f:
        f.write("{not json\n")
    fig = curves_figure(folder, 8, 5)
    dev_ax = fig.axes[1]
    assert labelled_lines(dev_ax) == ["dev rmse", "dev mae", "best epoch 2"]
    assert "lower is better" in dev_ax.get_title()
    result = run_plot("curves", folder, "-o", tmp_path / "c.png")
    assert result.exit_code == 0
    assert "history.jsonl:5: skipped" in result.stderr


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "does not exist"),
        ("empty-folder", "no history.jsonl"),
        ("no-rows", "no epoch rows"),
        ("no-dev", "no dev metrics"),
    ],
)
def test_curves_bad_input_is_one_line_exit_2(tmp_path: Path, setup: str, message: str) -> None:
    folder = tmp_path / "ckpt"
    if setup != "missing":
        folder.mkdir()
    if setup == "no-rows":
        (folder / "history.jsonl").write_text("\n[1, 2]\n")
    if setup == "no-dev":
        (folder / "history.jsonl").write_text('{"epoch": 1, "train_loss": 0.5}\n')
    out = tmp_path / "c.png"
    result = run_plot("curves", folder, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_output_checks_come_first_and_keep_existing_files(checkpoint: Path, tmp_path: Path) -> None:
    bad_suffix = run_plot("curves", checkpoint, "-o", tmp_path / "c.jpg")
    assert bad_suffix.exit_code == 2 and ".png or .svg" in bad_suffix.stderr
    folder = tmp_path / "pics.png"
    folder.mkdir()
    assert run_plot("curves", checkpoint, "-o", folder).exit_code == 2
    no_dir = run_plot("curves", checkpoint, "-o", tmp_path / "nowhere" / "c.png")
    assert no_dir.exit_code == 2 and "does not exist" in no_dir.stderr
    # A failing plot leaves an existing output as it was.
    out = tmp_path / "keep.png"
    out.write_bytes(b"old")
    assert run_plot("curves", tmp_path / "missing", "-o", out).exit_code == 2
    assert out.read_bytes() == b"old"
    # A successful one replaces it.
    assert run_plot("curves", checkpoint, "-o", out).exit_code == 0
    assert png_size(out) == (800, 500)


# -- evaluation pictures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def models() -> dict[str, BiLSTM]:
    return {
        name: BiLSTM.load(name, device="cpu", threads=1)
        for name in ("sentiment", "pos-en", "elecdemand-h1", "cloze-en")
    }


def test_registry_covers_every_task() -> None:
    from bilstm.runtime.tasks import MODEL_CLASSES

    assert set(EVAL_PLOTS) == set(MODEL_CLASSES)


def test_classify_confusion_matrix(models: dict[str, BiLSTM], tmp_path: Path) -> None:
    data = tmp_path / "dev.tsv"
    data.write_text(CLASSIFY_DATA)
    model = models["sentiment"]
    fig = eval_figure(model, data, EvalOptions(batch_size=8), 6, 4)
    matrix_ax, _colorbar_ax = fig.axes
    shown = np.ma.filled(matrix_ax.get_images()[0].get_array(), 0)
    assert shown.tolist() == model.evaluate(data, 8)["confusion"]
    assert [t.get_text() for t in matrix_ax.get_xticklabels()] == model.labels
    out = tmp_path / "eval.png"
    result = run_plot("eval", "sentiment", data, "-o", out, "--dpi", 40)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (320, 200)


def test_tag_accuracy_per_tag_and_confusions(models: dict[str, BiLSTM], tmp_path: Path) -> None:
    data = tmp_path / "dev.tsv"
    data.write_text(TAG_DATA)
    model = models["pos-en"]
    fig = eval_figure(model, data, EvalOptions(batch_size=8), 10, 5)
    bars_ax, conf_ax, _colorbar = fig.axes
    gold = [
        "DET",
        "NOUN",
        "VERB",
        "ADP",
        "DET",
        "NOUN",
        "PUNCT",
        "PRON",
        "VERB",
        "ADJ",
        "NOUN",
        "PUNCT",
        "VERB",
        "ADV",
        "PUNCT",
    ]
    assert len(bars_ax.patches) == len(set(gold))  # one bar per gold tag present
    preds = model.tag(
        [
            ["The", "cat", "sat", "on", "the", "mat", "."],
            ["She", "likes", "green", "tea", "."],
            ["Run", "fast", "!"],
        ]
    )
    predicted = [t for p in preds for t in p.tags]
    wrong = sum(g != p for g, p in zip(gold, predicted, strict=True))
    confusions = np.ma.filled(conf_ax.get_images()[0].get_array(), 0)
    assert confusions.sum() == wrong and np.trace(confusions) == 0
    accuracy = 1 - wrong / len(gold)
    assert f"token accuracy {accuracy:.3f} on {len(gold)} tokens" in fig.get_suptitle()
    out = tmp_path / "tags.svg"
    result = run_plot("eval", "pos-en", data, "-o", out, "--width", 10, "--height", 5)
    assert result.exit_code == 0, result.output
    assert svg_info(out) == ("720pt", "360pt", 3)


def test_tag_refuses_unknown_gold_tags(tmp_path: Path) -> None:
    data = tmp_path / "dev.tsv"
    data.write_text("The\tDT\ncat\tNN\n")
    result = run_plot("eval", "pos-en", data, "-o", tmp_path / "t.png")
    assert result.exit_code == 2 and "not among the model's" in result.stderr


def test_forecast_vs_actual_with_anomalies(models: dict[str, BiLSTM], tmp_path: Path) -> None:
    model = models["elecdemand-h1"]
    data = EXAMPLES / "demand.csv"
    opts = EvalOptions(batch_size=64, anomalies=True, threshold=1.0)
    fig = eval_figure(model, data, opts, 8, 5)
    series_ax, z_ax = fig.axes
    assert labelled_lines(series_ax) == ["actual Demand", "forecast, 1 ahead"]
    values, lines = model.read_series(str(data))  # type: ignore[attr-defined]
    records = model.series_records(  # type: ignore[attr-defined]
        values, lines, RunOptions(batch_size=64, rolling=True, anomalies=True, threshold=1.0)
    )
    flagged = [r for r in records if r["anomalies"][0]]
    assert flagged  # threshold 1 flags some rows of the example
    (marks,) = series_ax.collections
    assert len(marks.get_offsets()) == len(flagged)
    forecast_line = series_ax.get_lines()[1]
    assert len(forecast_line.get_xdata()) == len(lines) - model.window  # type: ignore[attr-defined]
    assert list(forecast_line.get_ydata()) == [r["forecast"][0] for r in records[:-1]]
    assert len(labelled_lines(z_ax)) == 1 and len(z_ax.get_lines()) == 3  # z, +-threshold
    out = tmp_path / "demand.png"
    result = run_plot("eval", "elecdemand-h1", data, "-o", out, "--anomalies", "--threshold", 1)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (800, 500)


def test_forecast_without_anomalies_is_one_panel(models: dict[str, BiLSTM]) -> None:
    fig = eval_figure(models["elecdemand-h1"], EXAMPLES / "demand.csv", EvalOptions(64), 8, 5)
    assert len(fig.axes) == 1 and not fig.axes[0].collections
    with pytest.raises(Exception, match=r"--step must be within 1\.\.1"):
        eval_figure(models["elecdemand-h1"], EXAMPLES / "demand.csv", EvalOptions(64, step=2), 8, 5)


def test_cloze_topk_by_position_and_length(models: dict[str, BiLSTM], tmp_path: Path) -> None:
    model = models["cloze-en"]
    data = tmp_path / "sentences.txt"
    data.write_text((EXAMPLES / "sentences.txt").read_text() * 3 + "the the the the the\n")
    fig = eval_figure(model, data, EvalOptions(batch_size=16, top_k=5), 8, 5)
    _position_ax, length_ax = fig.axes
    for ax in fig.axes:
        assert labelled_lines(ax) == ["top-1", "top-5"]
    # The blanks are the ones `bilstm eval` asks: the same totals.
    metrics = model.evaluate(data, 16)
    assert len(cloze_questions(model, data)) == metrics["questions"]  # type: ignore[arg-type]
    title = fig.get_suptitle()
    assert f"top-1 {metrics['top1']:.3f}, top-5 {metrics['top5']:.3f}" in title
    assert f"on {metrics['questions']} seeded blanks" in title
    counts = [int(t.get_text().split("n=")[1].rstrip(")")) for t in length_ax.get_xticklabels()]
    assert sum(counts) == metrics["questions"]
    out = tmp_path / "cloze.svg"
    result = run_plot("eval", "cloze-en", data, "-o", out, "--width", 9, "--height", 4)
    assert result.exit_code == 0, result.output
    assert svg_info(out) == ("648pt", "288pt", 2)


@pytest.mark.parametrize(
    "model, data, option, message",
    [
        ("sentiment", "reviews.txt", "--top-k=3", "--top-k applies to cloze models only"),
        ("cloze-en", "sentences.txt", "--anomalies", "--anomalies applies to forecast models"),
        ("elecdemand-h1", "demand.csv", "--tag-column=xpos", "--tag-column applies to tag"),
    ],
)
def test_options_of_other_tasks_are_refused(
    tmp_path: Path, model: str, data: str, option: str, message: str
) -> None:
    out = tmp_path / "e.png"
    result = run_plot("eval", model, EXAMPLES / data, "-o", out, option)
    assert result.exit_code == 2 and message in result.stderr
    assert not out.exists()


def test_eval_output_is_never_an_input(tmp_path: Path) -> None:
    data = tmp_path / "dev.png"  # a data file with an image suffix
    data.write_text(CLASSIFY_DATA)
    result = run_plot("eval", "sentiment", data, "-o", data)
    assert result.exit_code == 2 and "would destroy" in result.stderr
    assert data.read_text() == CLASSIFY_DATA
    missing = run_plot("eval", "sentiment", tmp_path / "none.tsv", "-o", tmp_path / "e.png")
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_importing_the_command_does_not_load_matplotlib() -> None:
    code = (
        "import sys, bilstm.runtime.plots as p; p.plot_app(); "
        "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- Optuna studies (bilstm tune) ------------------------------------------------------------


def write_study(folder: Path, speed: bool) -> Path:
    """A bilstm tune folder's study.db, made with Optuna directly: 4 completed trials (one
    with int8 speed), 1 pruned, as `bilstm tune` records them."""
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    folder.mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{folder / 'study.db'}",
        study_name="bilstm-tune",
        directions=["maximize", "maximize"] if speed else ["maximize"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names(["accuracy", "items_per_s"] if speed else ["accuracy"])
    dists = {
        "hidden_size": CategoricalDistribution([32, 64, 128]),
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
    }
    rows = [
        (0.70, 900.0, 32, 1e-3),
        (0.80, 500.0, 64, 3e-3),
        (0.75, 700.0, 128, 1e-4),
        (0.60, 400.0, 64, 1e-2),
    ]
    for acc, speed_value, hidden, lr in rows:
        study.add_trial(
            create_trial(
                values=[acc, speed_value] if speed else [acc],
                params={"hidden_size": hidden, "lr": lr},
                distributions=dists,
                user_attrs={"int8_items_per_s": speed_value * 1.5} if hidden == 32 else {},
            )
        )
    if not speed:
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params={"hidden_size": 32, "lr": 5e-3},
                distributions=dists,
                intermediate_values={1: 0.5, 2: 0.55},
            )
        )
    return folder


def test_study_history_and_importances(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "tune", speed=False)
    out = tmp_path / "study.png"
    result = run_plot("study", folder, "-o", out, "--width", 10, "--height", 4, "--dpi", 50)
    assert result.exit_code == 0, result.output
    assert png_size(out) == (500, 200)
    fig = study_figure(folder, 10, 4)
    history, importance = fig.axes
    assert labelled_lines(history) == ["completed", "pruned (last value)", "best so far"]
    completed, pruned, best = history.get_lines()
    assert list(completed.get_xdata()) == [0, 1, 2, 3]
    assert list(completed.get_ydata()) == [0.70, 0.80, 0.75, 0.60]
    assert (list(pruned.get_xdata()), list(pruned.get_ydata())) == ([4], [0.55])
    assert list(best.get_ydata()) == [0.70, 0.80, 0.80, 0.80]
    bars = importance.patches
    assert len(bars) == 2
    names = [t.get_text() for t in importance.get_yticklabels()]
    assert sorted(names) == ["hidden_size", "lr"]
    assert sum(b.get_width() for b in bars) == pytest.approx(1.0)


def test_study_with_two_objectives_draws_the_pareto_front(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "tune", speed=True)
    out = tmp_path / "study.svg"
    result = run_plot("study", folder, "-o", out, "--width", 12, "--height", 4)
    assert result.exit_code == 0, result.output
    assert svg_info(out) == ("864pt", "288pt", 3)
    pareto = study_figure(folder, 12, 4).axes[2]
    assert labelled_lines(pareto) == ["trials", "Pareto front (fp32)", "front, int8"]
    trials, front, int8 = pareto.get_lines()
    assert len(trials.get_xdata()) == 4
    # (900, 0.70), (500, 0.80), (700, 0.75) are optimal; (400, 0.60) is dominated.
    assert list(front.get_xdata()) == [500.0, 700.0, 900.0]
    assert list(front.get_ydata()) == [0.80, 0.75, 0.70]
    assert (list(int8.get_xdata()), list(int8.get_ydata())) == ([1350.0], [0.70])


def test_study_input_is_read_only_and_checked(tmp_path: Path) -> None:
    import sqlite3

    folder = write_study(tmp_path / "tune", speed=False)
    db = folder / "study.db"
    before = db.read_bytes()
    same = run_plot("study", db, "-o", tmp_path / "same.png")  # the file itself works too
    assert same.exit_code == 0, same.output
    assert db.read_bytes() == before
    named = tmp_path / "named.png"  # a study file with an image suffix, as its own output
    named.write_bytes(before)
    onto = run_plot("study", named, "-o", named)
    assert onto.exit_code == 2 and "would destroy" in onto.stderr
    assert named.read_bytes() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run_plot("study", empty, "-o", tmp_path / "x.png")
    assert missing.exit_code == 2 and "no Optuna study" in missing.stderr
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as con:
        con.execute("CREATE TABLE notes (x TEXT)")
        con.commit()
    kept = other.read_bytes()
    foreign = run_plot("study", other, "-o", tmp_path / "y.png")
    assert foreign.exit_code == 2 and "without an Optuna study" in foreign.stderr
    assert other.read_bytes() == kept  # Optuna never got to create its tables in it
    text = tmp_path / "text.db"
    text.write_text("not a database at all, just text of some length " * 20)
    bad = run_plot("study", text, "-o", tmp_path / "z.png")
    assert bad.exit_code == 2 and "not an SQLite database" in bad.stderr
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "z.png").exists()
