"""tag, forecast and cloze end to end on tiny data: train -> checkpoint -> export -> run."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

from bilstm.cli import app as full_app  # noqa: E402
from bilstm.core.datasets import read_series, read_tagged, read_text_lines  # noqa: E402
from bilstm.core.errors import DataError  # noqa: E402
from bilstm.core.tokenizer import TokenizerConfig  # noqa: E402
from bilstm.export import export_checkpoint  # noqa: E402
from bilstm.models.checkpoint import load_checkpoint  # noqa: E402
from bilstm.models.cloze import train_cloze  # noqa: E402
from bilstm.models.config import TrainConfig  # noqa: E402
from bilstm.models.forecasting import train_forecaster  # noqa: E402
from bilstm.models.tagging import train_tagger  # noqa: E402
from bilstm.runtime import BiLSTM  # noqa: E402
from bilstm.runtime.cli import _make_apps  # noqa: E402

UMBRELLA, SINGLE = full_app(), _make_apps()[1]
SMALL = {"embedding_dim": 12, "hidden_size": 12, "dropout": 0.0, "embedding_dropout": 0.0}
DETS, NOUNS, VERBS = ["the", "a", "this"], ["dog", "cat", "bird", "fox"], ["runs", "sees", "eats"]


def write_conllu(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    out = []
    for s in range(n):
        words = [
            (rng.choice(DETS), "DET"),
            (rng.choice(NOUNS), "NOUN"),
            (rng.choice(VERBS), "VERB"),
            (rng.choice(DETS), "DET"),
            (rng.choice(NOUNS).capitalize(), "NOUN"),
        ]
        out.append(f"# sent_id = {s}")
        out += [f"{i}\t{w}\t{w}\t{t}\tX\t_\t0\tdep\t_\t_" for i, (w, t) in enumerate(words, 1)]
        out.append("")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("tag")
    train = read_tagged(write_conllu(d / "train.conllu", 120, 1))
    dev = read_tagged(write_conllu(d / "dev.conllu", 30, 2))
    ckpt = train_tagger(
        train,
        dev,
        d / "ckpt",
        {**SMALL, "char_dim": 8, "char_filters": 8, "max_word_length": 8},
        TrainConfig(epochs=8, batch_size=16, lr=0.02, patience=8),
        lowercase=True,
        max_length=50,
        char_features=True,
        data_info={},
    )
    path = d / "tag.onnx"
    export_checkpoint(d / "ckpt", path)
    return d, ckpt, path


def test_tagger_learns_and_exports(tagger) -> None:  # type: ignore[no-untyped-def]
    _, ckpt, path = tagger
    losses = [h["train_loss"] for h in ckpt.history]
    assert losses[-1] < losses[0] * 0.5
    assert ckpt.summary["dev_metrics"]["accuracy"] > 0.9
    model = BiLSTM.load(path, device="cpu", threads=1)
    (pred,) = model.predict(["the fox eats a Cat"])
    assert pred.tokens == ["the", "fox", "eats", "a", "Cat"]
    assert pred.tags == ["DET", "NOUN", "VERB", "DET", "NOUN"]
    assert model.predict([""])[0].tags == []


def test_tagger_cli_and_eval(tagger) -> None:  # type: ignore[no-untyped-def]
    d, _, path = tagger
    result = CliRunner().invoke(
        SINGLE, [str(path), "-", "--quiet"], input="a dog sees\n\nthe cat\n"
    )
    assert result.exit_code == 0, result.output
    recs = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["line"] for r in recs] == [1, 2, 3]
    assert recs[0]["tags"] == ["DET", "NOUN", "VERB"] and recs[1]["tags"] == []
    ev = CliRunner().invoke(UMBRELLA, ["eval", str(path), str(d / "dev.conllu")])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout)["accuracy"] > 0.9
    # a checkpoint folder is evaluated through a temporary export: same numbers
    ev2 = CliRunner().invoke(UMBRELLA, ["eval", str(d / "ckpt"), str(d / "dev.conllu")])
    assert ev2.exit_code == 0, ev2.output
    assert json.loads(ev2.stdout)["accuracy"] == json.loads(ev.stdout)["accuracy"]


def test_two_column_tag_format_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "t.tsv"
    p.write_text("John\tB-PER\nruns\tO\n\nParis\tB-LOC\n")
    sents = read_tagged(p)
    assert [s.tokens for s in sents] == [["John", "runs"], ["Paris"]]
    p.write_text("John\tB-PER\tx\ty\n")
    with pytest.raises(DataError, match=r"t\.tsv:1: expected 10 CoNLL-U columns"):
        read_tagged(p)


def write_series(path: Path, n: int, offset: int) -> Path:
    rows = ["step,load,temp,flag"]
    for i in range(offset, offset + n):
        temp = 20 + 5 * math.sin(i / 7)
        rows.append(
            f"{i},{10 + 3 * math.sin(i * 2 * math.pi / 12) + 0.2 * temp:.4f},{temp:.3f},{i % 2}"
        )
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("fc")
    cols = ["load", "temp"]
    train = read_series(write_series(d / "train.csv", 300, 0), cols)
    dev = read_series(write_series(d / "dev.csv", 60, 300), cols)
    ckpt = train_forecaster(
        train,
        dev,
        d / "ckpt",
        "load",
        ["temp"],
        window=12,
        horizon=3,
        season=12,
        model_cfg={"hidden_size": 16, "dropout": 0.0},
        train_cfg=TrainConfig(epochs=15, batch_size=32, lr=0.01, patience=15),
        data_info={},
    )
    path = d / "fc.onnx"
    export_checkpoint(d / "ckpt", path)
    return d, ckpt, path


def test_forecaster_learns_beats_persistence_and_exports(forecaster) -> None:  # type: ignore[no-untyped-def]
    _, ckpt, path = forecaster
    m = ckpt.summary["dev_metrics"]
    assert m["rmse"] < m["baseline_persistence_rmse"]
    assert {"baseline_seasonal_naive_rmse", "mae_step1", "rmse_last_step"} <= set(m)
    assert len(ckpt.task_config["residual_std"]) == 3
    model = BiLSTM.load(path, device="cpu", threads=1)
    assert model.columns == ["load", "temp"]
    window = np.ones((12, 2), np.float32) * 12
    (fc,) = model.predict(window)
    assert len(fc.values) == 3
    with pytest.raises(Exception, match="NaN"):
        model.predict(np.full((12, 2), np.nan, np.float32))


def test_forecaster_cli_rolling_anomalies_and_eval(forecaster) -> None:  # type: ignore[no-untyped-def]
    d, _, path = forecaster
    last = CliRunner().invoke(SINGLE, [str(path), str(d / "dev.csv"), "--quiet"])
    assert last.exit_code == 0, last.output
    (rec,) = [json.loads(x) for x in last.stdout.splitlines()]
    assert rec["row"] == 61 and len(rec["forecast"]) == 3
    rolling = CliRunner().invoke(
        SINGLE, [str(path), str(d / "dev.csv"), "--rolling", "--anomalies", "--quiet"]
    )
    assert rolling.exit_code == 0, rolling.output
    recs = [json.loads(x) for x in rolling.stdout.splitlines()]
    assert len(recs) == 60 - 12 + 1
    assert recs[-1]["actual"] == [None, None, None]
    assert recs[0]["anomalies"] is not None and len(recs[0]["zscores"]) == 3
    ev = CliRunner().invoke(UMBRELLA, ["eval", str(path), str(d / "dev.csv")])
    assert ev.exit_code == 0, ev.output
    assert "baseline_persistence_rmse" in json.loads(ev.stdout)


def test_series_errors(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("a,b\n1,2\n3,\n")
    with pytest.raises(DataError, match=r"s\.csv:3: column 'b' has a missing value"):
        read_series(p, ["a", "b"])
    p.write_text("a,b\n1,x\n")
    with pytest.raises(DataError, match=r"s\.csv:2: column 'b' has 'x'"):
        read_series(p, ["a", "b"])
    p.write_text("a,b\n1,nan\n")
    with pytest.raises(DataError, match="finite"):
        read_series(p, ["a", "b"])


SENTENCES = [
    "i like my eggs fried and scrambled",
    "the cat sat on the mat",
    "she drinks hot tea every morning",
    "we walk the dog in the park",
    "he reads a good book at night",
]


@pytest.fixture(scope="module")
def cloze(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("cloze")
    (d / "train.txt").write_text("\n".join(SENTENCES * 40) + "\n")
    (d / "dev.txt").write_text("\n".join(SENTENCES) + "\n")
    ckpt = train_cloze(
        read_text_lines(d / "train.txt"),
        read_text_lines(d / "dev.txt"),
        d / "ckpt",
        SMALL,
        TrainConfig(epochs=10, batch_size=16, lr=0.02, patience=10),
        TokenizerConfig(),
        data_info={},
    )
    path = d / "cloze.onnx"
    export_checkpoint(d / "ckpt", path)
    return d, ckpt, path


def test_cloze_learns_and_fills(cloze) -> None:  # type: ignore[no-untyped-def]
    d, ckpt, path = cloze
    assert ckpt.summary["dev_metrics"]["top5"] > 0.6
    model = BiLSTM.load(path, device="cpu", threads=1)
    (pred,) = model.predict(["the cat sat on the ___"], top_k=3)
    assert len(pred.candidates) == 3
    assert all(w not in ("<pad>", "<unk>", "<mask>") for w, _ in pred.candidates)
    assert pred.word == "mat"
    result = CliRunner().invoke(
        SINGLE,
        [str(path), "-", "--quiet", "--top-k", "2"],
        input="she drinks hot ___ every morning\nno blank here\n\n",
    )
    assert result.exit_code == 1  # the line without a blank is an error record
    recs = [json.loads(x) for x in result.stdout.splitlines()]
    assert recs[0]["word"] == "tea" and len(recs[0]["candidates"]) == 2
    assert "no '___' blank" in recs[1]["error"]
    assert recs[2]["candidates"] == []
    ev = CliRunner().invoke(UMBRELLA, ["eval", str(path), str(d / "dev.txt")])
    assert ev.exit_code == 0 and "top1" in json.loads(ev.stdout)


def test_checkpoints_round_trip(tagger, forecaster, cloze) -> None:  # type: ignore[no-untyped-def]
    for d, ckpt, _ in (tagger, forecaster, cloze):
        loaded = load_checkpoint(d / "ckpt")
        assert loaded.task_config == json.loads(json.dumps(ckpt.task_config))
        assert loaded.model_config == ckpt.model_config
