"""`bilstm train` never destroys what it did not write, and refuses bad settings up front."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner

from bilstm.models.cli import app

TINY = ["--epochs", "1", "--hidden-size", "4", "--embedding-dim", "4", "--batch-size", "8"]
OWN = {
    "config.json",
    "vocab.json",
    "weights.safetensors",
    "history.jsonl",
    "summary.json",
    "examples.json",
    "trainer_state.pt",
}


def train(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())  # rich wraps at 80 columns


@pytest.fixture
def tsv(tmp_path: Path) -> tuple[Path, Path]:
    data, dev = tmp_path / "in" / "train.tsv", tmp_path / "in" / "dev.tsv"
    data.parent.mkdir()
    rows = ["pos\tgood film", "neg\tbad film", "pos\tgreat", "neg\tawful plot"] * 3
    data.write_text("\n".join(rows) + "\n")
    dev.write_text("pos\tgood\nneg\tbad\n")
    return data, dev


def classify(data: Path, dev: Path, out: Path | str, *more: object) -> tuple[int, str]:
    return train("classify", "--data", data, "--dev", dev, "--out", out, *TINY, *more)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A classifier checkpoint trained for 3 epochs on a dozen lines (history of 3 rows)."""
    from bilstm.core.datasets import LabelledText
    from bilstm.core.tokenizer import TokenizerConfig
    from bilstm.models.classify import train_classifier
    from bilstm.models.config import TrainConfig

    items = [
        LabelledText(t, lab, i) for i, (lab, t) in enumerate([("pos", "good"), ("neg", "bad")] * 6)
    ]
    return train_classifier(
        items,
        items[:4],
        tmp_path_factory.mktemp("tiny") / "ck",
        {"embedding_dim": 4, "hidden_size": 4},
        TrainConfig(epochs=3, batch_size=4, patience=9),
        TokenizerConfig(),
        {"train": "t", "dev": "d"},
    )


# 1, 2: --out


def test_out_folder_holding_the_training_data_is_refused_and_untouched(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    folder.mkdir()
    data, dev = folder / "train.tsv", folder / "dev.tsv"
    data.write_text("pos\tgood\nneg\tbad\n")
    dev.write_text("pos\tgood\n")
    code, out = classify(data, dev, folder)
    assert code == 2
    assert f"--out {folder} contains the --data file" in out
    assert data.read_text() == "pos\tgood\nneg\tbad\n" and dev.is_file()


def test_out_folder_of_other_files_is_refused(tsv: tuple[Path, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    code, out = classify(*tsv, folder)
    assert code == 2
    assert "already holds other files (notes.txt) and no bilstm checkpoint" in out
    assert "train 12 texts" not in out  # refused before any data was read
    assert sorted(os.listdir(folder)) == ["notes.txt"]


def test_out_dot_is_refused_up_front(
    tsv: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "x.txt").write_text("x")
    monkeypatch.chdir(here)
    code, out = classify(*tsv, ".")
    assert code == 2 and out.startswith("error: --out . is a folder that already holds")
    assert os.listdir(here) == ["x.txt"]


@pytest.mark.parametrize("which", ["dev", "data"])
def test_out_equal_to_an_input_is_refused(tsv: tuple[Path, Path], which: str) -> None:
    target = tsv[1] if which == "dev" else tsv[0]
    before = target.read_text()
    code, out = classify(*tsv, target)
    assert code == 2 and f"is the --{which} file" in out
    assert target.is_file() and target.read_text() == before


def test_out_that_is_a_file_or_contains_config_or_vectors(
    tsv: tuple[Path, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other.txt"
    other.write_text("x")
    code, out = classify(*tsv, other)
    assert code == 2 and "is a file; --out names the folder" in out
    assert other.read_text() == "x"
    run = tmp_path / "run"
    run.mkdir()
    cfg = run / "cfg.json"
    cfg.write_text("{}")
    code, out = classify(*tsv, run, "--config", cfg)
    assert code == 2 and "contains the --config file" in out
    vec = run / "vec.txt"
    cfg.unlink()
    vec.write_text("good 1 0 0 0\n")
    code, out = classify(*tsv, run, "--vectors", vec)
    assert code == 2 and "contains the --vectors file" in out


def test_existing_checkpoint_needs_force_and_keeps_user_files(
    tsv: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    code, out = classify(*tsv, run)
    assert code == 0, out
    assert set(os.listdir(run)) == OWN
    (run / "NOTES.md").write_text("my notes")
    (run / "plots").mkdir()
    code, out = classify(*tsv, run)
    assert code == 2 and "already holds a bilstm checkpoint; pass --resume" in out
    code, out = classify(*tsv, run, "--force", "--seed", "5")
    assert code == 0, out
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 5
    assert (run / "NOTES.md").read_text() == "my notes" and (run / "plots").is_dir()
    assert set(os.listdir(run)) == OWN | {"NOTES.md", "plots"}  # no temporary left behind
    code, out = classify(*tsv, run, "--resume", "--epochs", "2")
    assert code == 0, out
    assert (run / "NOTES.md").read_text() == "my notes"


def test_save_replaces_only_the_checkpoint_files(tiny_ckpt, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from bilstm.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = tiny_ckpt
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "train.tsv").write_text("pos\tgood\n")
    (folder / "trainer_state.pt").write_bytes(b"stale")  # an own file the new save lacks
    save_checkpoint(ckpt, folder)
    assert (folder / "train.tsv").read_text() == "pos\tgood\n"
    assert not (folder / "trainer_state.pt").exists()
    assert sorted(os.listdir(folder)) == sorted((OWN - {"trainer_state.pt"}) | {"train.tsv"})
    assert load_checkpoint(folder).labels == ckpt.labels


def test_folder_of_checkpoint_files_without_config_needs_force(
    tsv: tuple[Path, Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "weights.safetensors").write_bytes(b"half")
    code, out = classify(*tsv, run)
    assert code == 2 and "holds checkpoint files but no valid config.json" in out
    code, out = classify(*tsv, run, "--force")
    assert code == 0, out
    assert set(os.listdir(run)) == OWN


# 3: a damaged history.jsonl


def test_damaged_history_loads_with_a_warning(  # type: ignore[no-untyped-def]
    tiny_ckpt, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bilstm.models.checkpoint import load_checkpoint, save_checkpoint

    folder = tmp_path / "ck"
    save_checkpoint(tiny_ckpt, folder)
    lines = (folder / "history.jsonl").read_text().splitlines()
    (folder / "history.jsonl").write_text(lines[0] + '\n{"epoch": 2, "tr\n' + lines[2] + "\n")
    with caplog.at_level(logging.WARNING, logger="bilstm"):
        ckpt = load_checkpoint(folder)
    assert [h["epoch"] for h in ckpt.history] == [1, 3]
    assert f"{folder / 'history.jsonl'}:2: skipped a damaged history line" in caplog.text
    assert "delete the file" in caplog.text


# 4: config values and --device


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"hidden_size": "big"}, "'hidden_size' is \"big\", expected an integer"),
        ({"hidden_size": 0}, "'hidden_size' is 0: 0 is not in the range x>=1"),
        ({"hidden_size": 7.5}, "'hidden_size' is 7.5, expected an integer"),
        ({"cell": "rnn"}, "'cell' is \"rnn\": 'rnn' is not one of 'lstm', 'gru'"),
        ({"dropout": 2}, "'dropout' is 2"),
        ({"lowercase": "no"}, "'lowercase' is \"no\", expected true or false"),
        ({"epochs": None}, "'epochs' is null"),
    ],
)
def test_config_values_are_checked_before_data(
    tsv: tuple[Path, Path], tmp_path: Path, doc: dict[str, object], message: str
) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(doc))
    code, out = classify(*tsv, tmp_path / "run", "--config", cfg)
    assert code == 2, out
    assert out.startswith(f"error: {cfg}: ") and message in out, out
    assert not (tmp_path / "run").exists()


def test_bad_device_and_option_combination(tsv: tuple[Path, Path], tmp_path: Path) -> None:
    code, out = classify(*tsv, tmp_path / "run", "--device", "tpu")
    assert code == 2 and "--device 'tpu': not a device" in out and "cpu, cuda or cuda:N" in out
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"device": "gpu0"}')
    code, out = classify(*tsv, tmp_path / "run", "--config", cfg)
    assert code == 2 and f"--device (from {cfg}) 'gpu0'" in out
    code, out = classify(*tsv, tmp_path / "run", "--proj-size", "4")
    assert code == 2 and "proj_size must be below hidden_size (4)" in out


# 5: --resume keeps the saved run's settings


def test_resume_refuses_a_different_architecture(tsv: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out = classify(*tsv, run, "--patience", "7", "--lr", "0.01", "--min-freq", "2")
    assert code == 0, out
    code, out = classify(*tsv, run, "--resume", "--hidden-size", "64", "--no-lowercase")
    assert code == 2
    assert "--hidden-size 64 (the saved run has 4)" in out
    assert "--no-lowercase (the saved run has True)" in out
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"cell": "gru"}')
    code, out = classify(*tsv, run, "--resume", "--config", cfg)
    assert code == 2 and f"--cell gru (from {cfg}) (the saved run has lstm)" in out
    # Options not given keep the saved values (not the defaults); loop options may change.
    code, out = train(
        "classify", "--data", tsv[0], "--dev", tsv[1], "--out", run, "--resume", "--epochs", "2"
    )
    assert code == 0, out
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["patience"] == 7 and saved["train"]["lr"] == 0.01
    assert saved["train"]["min_freq"] == 2 and saved["train"]["epochs"] == 2
    assert saved["train"]["batch_size"] == 8


# 8: permissions


def test_checkpoint_files_follow_the_umask(tsv: tuple[Path, Path], tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        code, out = classify(*tsv, tmp_path / "run")
    finally:
        os.umask(old)
    assert code == 0, out
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes == dict.fromkeys(OWN, 0o664)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o775


# 6: forecast default features and the dev window count


def _series_csv(path: Path, start: int, rows: int) -> Path:
    lines = ["step,y,x,note"]
    for i in range(start, start + rows):
        lines.append(f"{i},{(i * 7) % 5 + i % 3},{i % 4},n{i}")
    path.write_text("\n".join(lines) + "\n")
    return path


FORECAST = ["--window", "4", "--epochs", "1", "--hidden-size", "4", "--batch-size", "8"]


def test_forecast_leaves_index_columns_out_and_explains_dev_windows(tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "train.csv", 1, 40)
    dev = _series_csv(tmp_path / "dev.csv", 41, 16)
    run = tmp_path / "run"
    code, out = train(
        "forecast", "--data", data, "--dev", dev, "--out", run, "--target", "y", *FORECAST
    )
    assert code == 0, out
    assert "not using ['step'] as features" in out and "'step' is named like a row index" in out
    assert "not using the non-numeric columns ['note']" in out
    assert json.loads((run / "config.json").read_text())["task_config"]["columns"] == ["y", "x"]
    assert "over 16 windows: every dev row is forecast, the first 4 from windows" in out
    assert "`bilstm eval` on dev.csv alone scores 12 windows" in out
    summary = json.loads((run / "summary.json").read_text())
    alone = summary["dev_file_alone_metrics"]
    assert summary["dev_windows"] == 16 and alone["windows"] == 12

    from bilstm.export import export_checkpoint
    from bilstm.runtime.evaluation import evaluate
    from bilstm.runtime.model import BiLSTM

    export_checkpoint(run, tmp_path / "m.onnx")
    metrics = evaluate(BiLSTM.load(tmp_path / "m.onnx"), dev)
    assert metrics["windows"] == 12
    assert metrics["rmse"] == pytest.approx(alone["rmse"], rel=1e-4, abs=1e-5)


def test_forecast_resume_keeps_columns_and_refuses_another_window(tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "train.csv", 1, 40)
    dev = _series_csv(tmp_path / "dev.csv", 41, 16)
    run = tmp_path / "run"
    base = ["forecast", "--data", data, "--dev", dev, "--out", run]
    code, out = train(*base, "--target", "y", "--features", "x", *FORECAST)
    assert code == 0, out
    code, out = train(*base, "--resume", "--window", "8")
    assert code == 2 and "--window 8 (the saved run has 4)" in out
    code, out = train(*base, "--resume", "--epochs", "2")
    assert code == 0, out
    assert "epoch 2:" in out and "columns ['y', 'x']" in out


def test_skip_bad_lines_is_refused_for_forecast(tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "train.csv", 1, 40)
    code, out = train(
        "forecast",
        "--data",
        data,
        "--dev",
        data,
        "--out",
        tmp_path / "r",
        "--target",
        "y",
        "--skip-bad-lines",
    )
    assert code == 2 and "--skip-bad-lines applies to classify/cloze/tag, not forecast" in out


def test_index_like_columns() -> None:
    from bilstm.models.forecasting import index_like_columns

    found = index_like_columns(
        {
            "t": [10.0, 20.0, 30.0, 40.0],
            "Row_ID": [5.0, 1.0, 2.0, 2.0],
            "temp": [1.0, 2.0, 3.5, 4.0],
            "hour": [22.0, 23.0, 0.0, 1.0],
            "flat": [1.0, 1.0, 1.0, 1.0],
        }
    )
    assert found == {"t": "counts up by 10 on every row", "Row_ID": "is named like a row index"}


def test_forecast_non_numeric_cell_names_the_line(tmp_path: Path) -> None:
    data = _series_csv(tmp_path / "train.csv", 1, 40)
    lines = data.read_text().splitlines()
    y, x = lines[9].split(",")[1:3]
    lines[9] = lines[9].replace(f",{y},{x},", f",{y},abc,", 1)
    data.write_text("\n".join(lines) + "\n")
    dev = _series_csv(tmp_path / "dev.csv", 41, 16)
    base = ["forecast", "--data", data, "--dev", dev, "--out", tmp_path / "run", *FORECAST]
    code, out = train(*base, "--target", "x")
    assert code == 2 and f"{data}:10: column 'x' has 'abc', expected a number" in out
    code, out = train(*base, "--target", "y")
    assert code == 2 and f"{data}:10: column 'x' has 'abc', expected a number" in out
    assert "--features" in out


# 7: bad lines


def test_skip_bad_lines_skips_non_utf8_lines(tmp_path: Path) -> None:
    from bilstm.core.datasets import read_classification, read_tagged, read_text_lines
    from bilstm.core.errors import DataError

    tsv = tmp_path / "d.tsv"
    tsv.write_bytes(b"pos\tgood\nneg\tbad \xff\nneg\tawful\n")
    with pytest.raises(DataError, match=r"d\.tsv:2: not valid UTF-8"):
        read_classification(tsv)
    items = read_classification(tsv, skip_bad_lines=True)
    assert [(i.label, i.line) for i in items] == [("pos", 1), ("neg", 3)]
    tagged = tmp_path / "d.tags"
    tagged.write_bytes(b"the\tDET\ncat\xfe\tNOUN\nsat\tVERB\n\ndog\tNOUN\n")
    sentences = read_tagged(tagged, skip_bad_lines=True)
    assert [s.tokens for s in sentences] == [["the", "sat"], ["dog"]]
    text = tmp_path / "d.txt"
    text.write_bytes(b"a b c\n\xc3(\nd e\n")
    assert read_text_lines(text, skip_bad_lines=True) == ["a b c", "d e"]


def test_skip_bad_lines_through_train(tsv: tuple[Path, Path], tmp_path: Path) -> None:
    data = tmp_path / "bad.tsv"
    data.write_bytes(tsv[0].read_bytes() + b"neg\tbad \xff\n")
    code, out = classify(data, tsv[1], tmp_path / "run")
    assert code == 2 and "bad.tsv:13: not valid UTF-8" in out
    code, out = classify(data, tsv[1], tmp_path / "run", "--skip-bad-lines")
    assert code == 0, out
    assert "train 12 texts" in out


def test_unknown_dev_tag_or_label_names_file_and_line(tmp_path: Path) -> None:
    data, dev = tmp_path / "train.tags", tmp_path / "dev.tags"
    data.write_text("the\tDET\ncat\tNOUN\n\na\tDET\ndog\tNOUN\n")
    dev.write_text("the\tDET\ncat\tNOUN\n\nit\tPRON\nruns\tVERB\n")
    code, out = train("tag", "--data", data, "--dev", dev, "--out", tmp_path / "run", *TINY)
    assert code == 2
    assert f"{dev}:4: the sentence starting here has tag 'PRON'" in out
    assert f"the training data {data} never uses (all unknown tags: ['PRON', 'VERB'])" in out
    tsv, dev_tsv = tmp_path / "t.tsv", tmp_path / "d.tsv"
    tsv.write_text("pos\tgood\nneg\tbad\n")
    dev_tsv.write_text("pos\tgood\nmeh\tso so\n")
    code, out = classify(tsv, dev_tsv, tmp_path / "run2")
    assert code == 2 and f"{dev_tsv}:2: label 'meh' is not among the labels" in out


def test_progress_lines_are_not_wrapped_when_stderr_is_a_pipe(
    tsv: tuple[Path, Path], tmp_path: Path
) -> None:
    """rich wraps at 80 columns off a terminal unless told not to; logs want whole lines."""
    out = tmp_path / ("a-very-long-folder-name-for-the-run-" * 3) / "ckpt"
    out.parent.mkdir()
    result = CliRunner().invoke(
        app, [str(a) for a in ["classify", "--data", tsv[0], "--dev", tsv[1], "--out", out, *TINY]]
    )
    assert result.exit_code == 0, result.output
    assert any(line.endswith(f"saved {out}") for line in result.output.splitlines()), result.output
