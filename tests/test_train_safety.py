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
    return result.exit_code, result.output


@pytest.fixture
def tsv(tmp_path: Path) -> tuple[Path, Path]:
    data, dev = tmp_path / "in" / "train.tsv", tmp_path / "in" / "dev.tsv"
    data.parent.mkdir()
    rows = ["pos\tgood film", "neg\tbad film", "pos\tgreat", "neg\tawful plot"] * 3
    data.write_text("\n".join(rows) + "\n")
    dev.write_text("pos\tgood\nneg\tbad\n")
    return data, dev


def classify(data: Path, dev: Path, out: Path, *more: object) -> tuple[int, str]:
    return train("classify", "--data", data, "--dev", dev, "--out", out, *TINY, *more)


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


def test_save_replaces_only_the_checkpoint_files(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from bilstm.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = trained[1]
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "train.tsv").write_text("pos\tgood\n")
    (folder / "trainer_state.pt").write_bytes(b"stale")  # an own file the new save lacks
    save_checkpoint(ckpt, folder)
    assert (folder / "train.tsv").read_text() == "pos\tgood\n"
    assert not (folder / "trainer_state.pt").exists()
    assert sorted(os.listdir(folder)) == sorted((OWN - {"trainer_state.pt"}) | {"train.tsv"})
    assert load_checkpoint(folder).labels == ckpt.labels


# 3: a damaged history.jsonl


def test_damaged_history_loads_with_a_warning(
    trained,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bilstm.models.checkpoint import load_checkpoint, save_checkpoint

    folder = tmp_path / "ck"
    save_checkpoint(trained[1], folder)
    lines = (folder / "history.jsonl").read_text().splitlines()
    (folder / "history.jsonl").write_text(lines[0] + '\n{"epoch": 2, "tr\n' + lines[2] + "\n")
    with caplog.at_level(logging.WARNING):
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
