"""Training options: resume, pretrained vectors, config files, task-option checks, torchrun.

`bilstm train` runs in this process (helpers.cli) except under torchrun, where the processes
are the point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.cli import Run, bilstm

torch = pytest.importorskip("torch")

BIN = Path(sys.executable).parent
TINY = ["--epochs", "2", "--hidden-size", "4", "--embedding-dim", "4", "--batch-size", "16"]


def train(*args: object) -> Run:
    return bilstm("train", *args)


def test_resume_continues_the_saved_run(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    base = [
        "classify",
        "--data",
        data_dir / "train.tsv",
        "--dev",
        data_dir / "dev.tsv",
        "--out",
        out,
        "--patience",
        "9",
        *TINY,
    ]
    first = train(*base)
    assert first.exit_code == 0, first.stderr
    assert (out / "trainer_state.pt").is_file()
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    more = train(*base[: -len(TINY)], *TINY[2:], "--epochs", "4", "--resume")
    assert more.exit_code == 0, more.stderr
    resumed = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4]
    assert resumed[:2] == history  # the first two epochs are kept, not retrained
    assert "epoch 3:" in more.stderr and "epoch 4:" in more.stderr
    assert "\nepoch 1:" not in more.stderr and not more.stderr.startswith("epoch 1:")


def test_resume_without_a_run_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    result = train(
        "classify",
        "--data",
        data_dir / "train.tsv",
        "--dev",
        data_dir / "dev.tsv",
        "--out",
        tmp_path / "none",
        "--resume",
    )
    assert result.exit_code == 2
    assert "not a checkpoint folder" in result.stderr


def test_pretrained_vectors_and_config_file(data_dir: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 4\ngreat 1 0 0 0\nBad 0 1 0 0\nnotinvocab 0 0 1 0\n")
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"hidden_size": 5, "embedding_dim": 4, "epochs": 1}))
    out = tmp_path / "run"
    result = train(
        "classify",
        "--data",
        data_dir / "train.tsv",
        "--dev",
        data_dir / "dev.tsv",
        "--out",
        out,
        "--vectors",
        vectors,
        "--config",
        config,
        "--hidden-size",
        "6",
    )
    assert result.exit_code == 0, result.stderr
    assert "word vectors: 2 of" in result.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["hidden_size"] == 6  # the flag wins over the file
    assert cfg["model"]["embedding_dim"] == 4 and cfg["train"]["epochs"] == 1
    bad = tmp_path / "bad.txt"
    bad.write_text("great 1 0\n")
    result = train(
        "classify",
        "--data",
        data_dir / "train.tsv",
        "--dev",
        data_dir / "dev.tsv",
        "--out",
        tmp_path / "r2",
        "--vectors",
        bad,
        *TINY,
    )
    assert result.exit_code == 2 and "bad.txt:1: expected a word and 4 numbers" in result.stderr


def test_option_for_another_task_is_refused(data_dir: Path, tmp_path: Path) -> None:
    result = train(
        "classify",
        "--data",
        data_dir / "train.tsv",
        "--dev",
        data_dir / "dev.tsv",
        "--out",
        tmp_path / "r",
        "--window",
        "12",
    )
    assert result.exit_code == 2 and "--window applies to forecast" in result.stderr


@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_two_processes_gloo(data_dir: Path, tmp_path: Path) -> None:
    """DDP on CPU: 2 ranks train together, rank 0 writes, the checkpoint exports with parity."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            BIN / "torchrun",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29533",
            BIN / "bilstm",
            "train",
            "classify",
            "--data",
            data_dir / "train.tsv",
            "--dev",
            data_dir / "dev.tsv",
            "--out",
            out,
            "--epochs",
            "6",
            "--hidden-size",
            "8",
            "--embedding-dim",
            "8",
            "--batch-size",
            "16",
            "--lr",
            "0.02",
            "--patience",
            "6",
            "--dropout",
            "0",
            "--embedding-dropout",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert max(h["dev_accuracy"] for h in history) > 0.8
    assert result.stderr.count("epoch 1:") == 1  # only rank 0 reports
    export = bilstm("export", out, tmp_path / "ddp.onnx")
    assert export.exit_code == 0, export.stderr
