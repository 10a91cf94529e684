"""Training: learning happens, checkpoints round-trip safely, bad data is named precisely."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bilstm.core.batching import pad_batch  # noqa: E402
from bilstm.core.datasets import read_classification  # noqa: E402
from bilstm.core.errors import CheckpointError, DataError  # noqa: E402
from bilstm.models.checkpoint import load_checkpoint, predict_logits  # noqa: E402


def test_training_learns(trained) -> None:  # type: ignore[no-untyped-def]
    _, ckpt = trained
    losses = [row["train_loss"] for row in ckpt.history]
    assert losses[-1] < losses[0] * 0.5
    assert ckpt.summary["dev_metrics"]["accuracy"] > 0.8
    assert ckpt.labels == ["neg", "pos"]


def test_checkpoint_round_trip(trained) -> None:  # type: ignore[no-untyped-def]
    path, ckpt = trained
    loaded = load_checkpoint(path)
    assert loaded.vocabulary.tokens == ckpt.vocabulary.tokens
    assert loaded.model_config == ckpt.model_config
    assert len(loaded.history) == len(ckpt.history) and loaded.examples
    ids, lens = pad_batch([[2, 3, 4], [5]])
    assert torch.equal(
        predict_logits(loaded.model, ids, lens), predict_logits(ckpt.model, ids, lens)
    )


def test_checkpoint_refuses_newer_format(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "ck"
    shutil.copytree(trained[0], copy)
    config = json.loads((copy / "config.json").read_text())
    config["format_version"] = 99
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="format_version is 99"):
        load_checkpoint(copy)


def test_pickled_weights_never_execute(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    copy = tmp_path / "ck"
    shutil.copytree(trained[0], copy)
    (copy / "weights.safetensors").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_checkpoint(copy)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("label\ttext\npos\tgood\nno tab here\n", "data.tsv:3: expected 'label<TAB>text'"),
        ("pos\tgood\n\tempty label\n", "data.tsv:2: the label (first column) is empty"),
        ("pos\ta\tb\n", "data.tsv:1: expected 2 tab-separated columns"),
        ("", "contains no examples"),
    ],
)
def test_bad_training_data(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_classification(path)
    assert message in str(err.value)


def test_bad_utf8_and_skip_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_bytes(b"pos\tgood\nneg\tbad \xff\n")
    with pytest.raises(DataError, match=r"data.tsv:2: not valid UTF-8"):
        read_classification(path)
    path.write_text("pos\tgood\nbroken line\nneg\tbad\n")
    items = read_classification(path, skip_bad_lines=True)
    assert [(i.label, i.line) for i in items] == [("pos", 1), ("neg", 3)]


def test_jsonl_data(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": 0}\n')
    assert [(i.text, i.label) for i in read_classification(path)] == [("good", "pos"), ("bad", "0")]
    path.write_text('{"text": "good"}\n')
    with pytest.raises(DataError, match=r"data\.jsonl:1"):
        read_classification(path)


def test_console_scripts_end_to_end(data_dir: Path, tmp_path: Path) -> None:
    """train -> export -> bilstm-run, the last two through the installed commands, as a user
    runs them. Training goes through the same `bilstm` entry point in this process: a third
    process would only import torch once more (the console script itself is the export's)."""
    from helpers.cli import bilstm

    bindir = Path(sys.executable).parent
    ckpt, onnx_path = tmp_path / "run", tmp_path / "m.onnx"
    train = bilstm(
        "train",
        "classify",
        "--data",
        data_dir / "train.tsv",
        "--dev",
        data_dir / "dev.tsv",
        "--out",
        ckpt,
        "--epochs",
        "2",
        "--hidden-size",
        "4",
        "--embedding-dim",
        "4",
    )
    assert train.exit_code == 0, train.stderr
    exp = subprocess.run(
        [bindir / "bilstm", "export", ckpt, onnx_path], check=True, capture_output=True, text=True
    )
    assert "max abs" in exp.stderr
    out = subprocess.run(
        [bindir / "bilstm-run", onnx_path, "-"],
        input="great\n\nbad\n",
        check=True,
        capture_output=True,
        text=True,
    )
    assert [json.loads(x)["line"] for x in out.stdout.splitlines()] == [1, 2, 3]
    # The error path needs no new process either.
    bad = bilstm("export", tmp_path / "nothing", tmp_path / "other.onnx")
    assert bad.exit_code == 2 and "not a checkpoint folder" in bad.stderr


STATE_KEYS = {  # what trainer_state.pt has held since --resume exists: older runs must resume
    "epoch",
    "model",
    "optimizer",
    "scheduler",
    "best_score",
    "best_epoch",
    "stale",
    "best_metrics",
    "history",
    "order_rng",
    "data_rng",
    "torch_rng",
}


def test_trainer_state_is_a_plain_dict(trained) -> None:  # type: ignore[no-untyped-def]
    """FitState is saved as a plain dict (torch.load weights_only) with the historical keys."""
    from bilstm.models.training import FitState

    path, ckpt = trained
    state = torch.load(path / "trainer_state.pt", weights_only=True)
    assert isinstance(state, dict) and set(state) == STATE_KEYS
    fit_state = FitState.from_dict(state)
    assert fit_state.epoch == len(ckpt.history) and fit_state.history == ckpt.history
    # torch.load gives lists for random.Random's tuples; setstate needs tuples back.
    assert isinstance(fit_state.order_rng, tuple) and isinstance(fit_state.order_rng[1], tuple)
    assert set(fit_state.to_dict()) == STATE_KEYS
    del state["stale"]
    with pytest.raises(CheckpointError, match="stale"):
        FitState.from_dict(state)


def test_tasks_are_looked_up_in_the_registry() -> None:
    """Every task trains through its registry entry's module; models/ has no task chains."""
    import importlib
    import re

    import bilstm.models
    from bilstm.models.tasks import TASKS

    for name, info in TASKS.items():
        assert info.name == name
        assert callable(importlib.import_module(info.module).train_from_options)
    chain = re.compile(r"task ==|task in \(|is Task\.")
    found = [
        f"{path.name}:{number}"
        for path in sorted(Path(bilstm.models.__file__).parent.glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if chain.search(line)
    ]
    assert found == []
