"""`bilstm tune`: search space, folds, pruning, resuming, results and what OUT may hold.

Trials are tiny (8-16 hidden units, 1-2 epochs on 120 synthetic reviews), so each costs about
a second; the search runs in-process through the command (`models/tune_cli.py`'s `app`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("torch")

from helpers.data import make_sentiment_tsv  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from bilstm.core.errors import DataError  # noqa: E402
from bilstm.models.tune_cli import app  # noqa: E402
from bilstm.models.tune_folds import split_blocks, split_lines, split_series  # noqa: E402
from bilstm.models.tune_space import default_space, parse_space  # noqa: E402

SPACE = {
    "hidden_size": [8, 16],
    "embedding_dim": 8,
    "lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True},
}


def tune(*args: object) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tune-data")
    space = folder / "space.json"
    space.write_text(json.dumps(SPACE))
    return {
        "train": make_sentiment_tsv(folder / "train.tsv", 120, seed=1),
        "dev": make_sentiment_tsv(folder / "dev.tsv", 40, seed=2),
        "space": space,
    }


def base_args(files: dict[str, Path], out: Path, *extra: object) -> list[object]:
    return [
        "classify",
        "--data",
        files["train"],
        "--dev",
        files["dev"],
        "--out",
        out,
        "--space",
        files["space"],
        "--epochs",
        2,
        "--threads",
        1,
        *extra,
    ]


def trials_of(out: Path) -> list[Any]:
    study = optuna.load_study(study_name="bilstm-tune", storage=f"sqlite:///{out / 'study.db'}")
    return study.get_trials(deepcopy=False)


# -- search space ----------------------------------------------------------------------------

OPTIONS = {
    "hidden_size",
    "embedding_dim",
    "layers",
    "cell",
    "merge",
    "pooling",
    "dropout",
    "embedding_dropout",
    "lr",
    "batch_size",
    "epochs",
    "data",
    "threads",
}


def test_default_space_keeps_only_the_options_of_the_task() -> None:
    assert "pooling" in default_space("classify")
    assert "pooling" not in default_space("tag")
    forecast = default_space("forecast")
    assert "embedding_dim" not in forecast and "embedding_dropout" not in forecast
    assert {"hidden_size", "layers", "cell", "lr", "batch_size"} <= set(forecast)
    result = tune("tag", "--show-space")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == default_space("tag")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"hidden_sise": [8]}, "not a model or training option"),
        ({"data": ["a"]}, "not a model or training option"),
        ({"pooling": ["max"]}, "applies to classify, not tag"),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.01}}, "is above 'high'"),
        ({"lr": {"type": "float", "low": 0, "high": 0.01, "log": True}}, "log range"),
        ({"layers": {"type": "int", "low": 1.5, "high": 3}}, "must be an integer"),
        ({"cell": {"type": "choice", "choices": ["gru"]}}, "'type' must be one of"),
        ({"cell": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.2, "steps": 2}}, "unknown keys"),
        ({"cell": "gru"}, "no searched option"),
    ],
)
def test_bad_space_files_name_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        parse_space(doc, "tag", "space.json", OPTIONS)
    assert str(info.value).startswith("space.json")


def test_space_values_follow_the_train_options_rules(
    files: dict[str, Path], tmp_path: Path
) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"hidden_size": [8, 0]}))
    args = base_args(files, tmp_path / "out")
    args[args.index("--space") + 1] = space
    result = tune(*args)
    assert result.exit_code == 2
    assert "'hidden_size' is 0" in result.stderr and "--hidden-size" in result.stderr
    assert not (tmp_path / "out").exists()


# -- folds -----------------------------------------------------------------------------------


def test_line_folds_partition_the_examples_and_repeat_the_header() -> None:
    lines = ["label\ttext"] + [f"pos\ttext {i}" for i in range(10)] + [""]
    folds = split_lines(lines, 3, seed=7)
    assert len(folds) == 3
    devs = [dev for _, dev in folds]
    assert all(dev[0] == "label\ttext" and train[0] == "label\ttext" for train, dev in folds)
    held = sorted(x for dev in devs for x in dev[1:])
    assert held == sorted(lines[1:-1])  # every example is held out exactly once
    for train, dev in folds:
        assert sorted(train[1:] + dev[1:]) == sorted(lines[1:-1])
    assert split_lines(lines, 3, seed=7) == folds  # seeded
    assert split_lines(lines, 3, seed=8) != folds


def test_block_folds_keep_sentences_whole() -> None:
    sentences = [[f"# id {i}", f"w{i}\tNOUN", ".\tPUNCT"] for i in range(6)]
    lines = [line for s in sentences for line in [*s, ""]]
    for train, dev in split_blocks(lines, 2, seed=1):
        blocks = "\n".join(dev).strip().split("\n\n")
        assert len(blocks) == 3
        assert all(b.split("\n") in sentences for b in blocks)
        assert len("\n".join(train).strip().split("\n\n")) == 3


def test_series_folds_chain_forward_in_time() -> None:
    lines = ["t,y"] + [f"{i},{i}" for i in range(12)]
    folds = split_series(lines, 3, seed=1)
    assert [(len(train) - 1, len(dev) - 1) for train, dev in folds] == [(3, 3), (6, 3), (9, 3)]
    for train, dev in folds:
        assert train[0] == dev[0] == "t,y"
        assert int(train[-1].split(",")[0]) + 1 == int(dev[1].split(",")[0])  # no gap, no leak


def test_too_few_units_for_the_folds() -> None:
    with pytest.raises(DataError, match="too few for 5 folds"):
        split_lines(["a", "b", "c"], 5, seed=1)


# -- the search ------------------------------------------------------------------------------


def test_search_writes_best_config_best_model_and_resumes(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "study"
    result = tune(*base_args(files, out, "--trials", 3))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    done = [t for t in trials_of(out) if t.state.name == "COMPLETE"]
    best = max(done, key=lambda t: t.values[0])
    assert results["best_trial"] == best.number
    assert results["best"]["accuracy"] == best.values[0]
    assert "best trials" in result.stdout and f"best: trial {best.number}" in result.stdout
    # best.json: the fixed options (not --threads, a machine setting) and the trial's values.
    config = json.loads((out / "best.json").read_text())
    assert config == {"epochs": 2, "seed": 13, **best.user_attrs["options"]}
    summary = json.loads((out / "best" / "summary.json").read_text())
    assert summary["dev_metrics"]["accuracy"] == pytest.approx(best.values[0])
    # Only the best model is kept; every trial's log stays.
    kept = sorted(p.relative_to(out).as_posix() for p in (out / "trials").rglob("*"))
    assert kept == [f"trials/{n:04d}{f}" for n in range(3) for f in ("", "/train.log")]
    # best.json is a bilstm train --config file that rebuilds the best model.
    from bilstm.models.cli import app as train_app

    again = tmp_path / "again"
    trained = CliRunner().invoke(
        train_app,
        [
            "classify",
            "--data",
            str(files["train"]),
            "--dev",
            str(files["dev"]),
            "--out",
            str(again),
            "--config",
            str(out / "best.json"),
            "--threads",
            "1",
        ],
    )
    assert trained.exit_code == 0, trained.output
    redone = json.loads((again / "summary.json").read_text())
    assert redone["dev_metrics"]["accuracy"] == pytest.approx(best.values[0])

    # Resuming: the same command with more trials runs only the new ones (machine settings
    # such as --threads may change).
    more = tune(*base_args(files, out, "--trials", 4, "--threads", 2))
    assert more.exit_code == 0, more.output
    assert "3 of 4 trials done" in more.stderr
    assert len(trials_of(out)) == 4
    # Other settings on the same study are refused, and nothing is touched.
    before = (out / "study.db").read_bytes()
    changed = tune(*base_args(files, out, "--trials", 5, "--folds", 2))
    assert changed.exit_code == 2 and "other settings" in changed.stderr
    assert "folds: now 2, the study has 0" in changed.stderr
    assert (out / "study.db").read_bytes() == before


def test_hopeless_trials_are_pruned_from_the_epoch_metric(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from bilstm.models.tune import TuneSettings, objective
    from bilstm.models.tune_space import parse_space as space_of

    class Always(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            return True

    out = tmp_path / "study"
    out.mkdir()
    settings = TuneSettings(
        task="classify",
        data=files["train"],
        dev=files["dev"],
        out=out,
        metric="accuracy",
        higher_is_better=True,
        space=space_of(SPACE, "classify", "space", OPTIONS),
        train_args=("--epochs", "3", "--threads", "1"),
        epochs=3,
    )
    study = optuna.create_study(direction="maximize", pruner=Always())
    study.optimize(lambda t: objective(t, settings), n_trials=1)
    trial = study.trials[0]
    assert trial.state.name == "PRUNED"
    assert list(trial.intermediate_values) == [1]  # stopped after the first epoch
    assert sorted(p.name for p in (out / "trials" / "0000").iterdir()) == ["train.log"]
    log = (out / "trials" / "0000" / "train.log").read_text()
    assert "epoch 1:" in log and "epoch 2:" not in log


def test_folds_select_on_training_data_and_retrain_on_all_of_it(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "study"
    result = tune(*base_args(files, out, "--trials", 2, "--folds", 2, "--epochs", 1))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    best = results["best"]
    assert len(best["fold_scores"]) == 2
    assert best["accuracy"] == pytest.approx(sum(best["fold_scores"]) / 2)
    # The fold files hold the training data, split: dev takes no part in the search.
    held = [
        line
        for k in (1, 2)
        for line in (out / "folds" / f"fold-{k}" / "dev.tsv").read_text().splitlines()[1:]
    ]
    assert sorted(held) == sorted(files["train"].read_text().splitlines()[1:])
    summary = json.loads((out / "best" / "summary.json").read_text())
    assert summary["train_examples"] == 120  # the final model saw all the training data
    assert results["final"]["dev_metrics"]["accuracy"] == summary["dev_metrics"]["accuracy"]
    assert not list((out / "trials").rglob("weights.safetensors"))  # fold models dropped


def test_speed_objective_exports_times_and_keeps_the_pareto_front(
    files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "study"
    args = base_args(files, out, "--trials", 1, "--epochs", 1, "--objective", "accuracy,speed")
    result = tune(*args)
    assert result.exit_code == 0, result.output
    front = json.loads((out / "results.json").read_text())["ranked"]
    assert [row["trial"] for row in front] == [0]
    assert front[0]["items_per_s"] > 0 and front[0]["int8_items_per_s"] > 0
    (trial,) = trials_of(out)
    assert trial.values[1] == front[0]["items_per_s"]
    folder = out / "trials" / "0000"
    assert (folder / "model.onnx").is_file() and (folder / "model-int8.onnx").is_file()
    assert "Pareto front" in result.stdout and "int8 items/s" in result.stdout
    pytest.importorskip("matplotlib")
    from bilstm.runtime.plots import study_figure

    assert len(study_figure(out, 12, 4).axes) == 3
    assert (out / "study.png").is_file()


def test_every_trial_failing_stops_the_search(files: dict[str, Path], tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"hidden_size": [8], "proj_size": [16], "embedding_dim": 8}))
    args = base_args(files, tmp_path / "out", "--trials", 10)
    args[args.index("--space") + 1] = space
    result = tune(*args)
    assert result.exit_code == 2
    assert "no trial completed (3 failed" in result.stderr
    assert "proj_size must be below hidden_size" in result.stderr
    assert len(trials_of(tmp_path / "out")) == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--objective", "speed"], "use accuracy"),
        (["--folds", "1"], "at least 2 folds"),
        (["--resume"], "a study resumes by itself"),
        (["--hidden-size", "8"], "also in the search space"),
        (["--window", "4"], "applies to forecast, not classify"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_options_are_refused_before_any_work(
    files: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    result = tune(*base_args(files, tmp_path / "out", *extra))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_out_never_destroys_what_tune_did_not_write(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = tune(*base_args(files, out))
    assert result.exit_code == 2 and "did not write (notes.txt)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    on_data = tune(*base_args(files, files["train"]))
    assert on_data.exit_code == 2 and "is the --data file" in on_data.stderr
    around = tune(*base_args(files, files["train"].parent))
    assert around.exit_code == 2 and "contains the --data file" in around.stderr


def test_epoch_callback_reaches_bilstm_train(files: dict[str, Path], tmp_path: Path) -> None:
    from bilstm.models.training import epoch_callback
    from bilstm.models.tune import run_train

    rows: list[dict[str, Any]] = []
    out = tmp_path / "ckpt"
    args = ["classify", "--data", files["train"], "--dev", files["dev"], "--out", out]
    with epoch_callback(rows.append):
        run_train(
            [str(a) for a in args] + ["--epochs", "2", "--hidden-size", "8"], tmp_path / "log"
        )
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["dev_accuracy"] for r in rows] == [r["dev_accuracy"] for r in history]


@pytest.mark.slow
def test_jobs_run_trials_in_parallel_processes(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = tune(*base_args(files, out, "--trials", 2, "--jobs", 2, "--epochs", 1))
    assert result.exit_code == 0, result.output
    assert "2 workers" in result.stderr
    trials = trials_of(out)
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    assert json.loads((out / "results.json").read_text())["trials"]["complete"] == 2


def test_timeout_stops_starting_trials(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = tune(*base_args(files, out, "--trials", 50, "--timeout", 1, "--epochs", 1))
    assert result.exit_code == 0, result.output
    trials = trials_of(out)
    assert 1 <= len(trials) < 50
    starts = [t.datetime_start for t in trials]
    assert (max(starts) - min(starts)).total_seconds() < 1.5  # none started after the timeout
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)  # none cut short
