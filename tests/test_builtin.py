"""The shipped sentiment model: loads by name, predicts sensibly, documents itself."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bilstm.runtime import BiLSTM
from bilstm.runtime.builtin import builtin_models
from bilstm.runtime.cli import _make_apps

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "reviews.txt"


def test_sentiment_is_shipped_and_loads_by_name() -> None:
    assert "sentiment" in builtin_models()
    model = BiLSTM.load("sentiment", device="cpu", threads=1)
    assert model.labels == ["negative", "positive"]
    assert model.metadata.training["dev_metrics"]["accuracy"] >= 0.78
    assert model.metadata.export["precision"] == "fp32"
    assert model.metadata.export["parity"]["max_abs"] <= 1e-5
    good, bad, empty = model.predict(
        [
            "A gorgeous, witty, seductive movie.",
            "A dull, lifeless and boring mess.",
            "",
        ]
    )
    assert good.label == "positive" and bad.label == "negative"
    assert empty.label is None


def test_bilstm_run_sentiment_on_examples() -> None:
    _, single = _make_apps()
    result = CliRunner().invoke(single, ["sentiment", str(EXAMPLES), "--quiet"])
    assert result.exit_code == 0, result.output
    out = [json.loads(x) for x in result.stdout.splitlines()]
    lines = EXAMPLES.read_text().splitlines()
    assert len(out) == len(lines)
    assert out[0]["label"] == "positive" and out[1]["label"] == "negative"
    assert out[2]["label"] is None  # the blank line


def test_int8_variant_is_small_and_agrees() -> None:
    fp32 = BiLSTM.load("sentiment", device="cpu", threads=1)
    int8 = BiLSTM.load("sentiment-int8", device="cpu", threads=1)
    export = int8.metadata.export
    assert export["precision"] == "int8"
    assert export["parity"]["max_abs"] <= export["parity"]["tolerance"] <= 0.1
    assert int8.path.stat().st_size * 3 < fp32.path.stat().st_size
    texts = EXAMPLES.read_text().splitlines()
    assert [p.label for p in int8.predict(texts)] == [p.label for p in fp32.predict(texts)]
    # the same input gives bit-identical output run after run
    assert int8.predict(texts) == int8.predict(texts)


def test_every_builtin_model_runs_on_its_example() -> None:
    """Each shipped model loads by name and gives a sensible answer on examples/."""
    examples = EXAMPLES.parent
    pos = BiLSTM.load("pos-en", device="cpu", threads=1)
    (tags,) = pos.predict(["The cat sat on the mat ."])
    assert tags.tags == ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT"]
    assert pos.metadata.training["dev_metrics"]["accuracy"] >= 0.95
    cloze = BiLSTM.load("cloze-en", device="cpu", threads=1)
    fills = cloze.predict((examples / "blanks.txt").read_text().splitlines(), top_k=3)
    assert len(fills) == 5 and all(len(f.candidates) == 3 for f in fills)
    import numpy as np

    from bilstm.core.datasets import read_series

    for name, horizon in (("elecdemand-h1", 1), ("elecdemand-h48", 48)):
        model = BiLSTM.load(name, device="cpu", threads=1)
        series = read_series(examples / "demand.csv", model.columns)
        window = np.stack([series.columns[c][-48:] for c in model.columns], axis=1)
        (forecast,) = model.predict(window)
        assert len(forecast.values) == horizon
        assert all(3.0 < v < 8.0 for v in forecast.values)  # GW, the range of the data


def test_shipped_table_matches_the_files_and_cards() -> None:
    """`SHIPPED` (what `bilstm info` shows) agrees with each file's metadata and its card."""
    from bilstm.runtime.builtin import ASSETS, SHIPPED

    recipes = Path(__file__).resolve().parents[1] / "models" / "recipes"
    assert set(SHIPPED) == set(builtin_models())
    for name, facts in SHIPPED.items():
        model = BiLSTM.load(name, device="cpu", threads=1)
        assert model.metadata.export["precision"] == facts.precision, name
        assert (recipes / facts.recipe).is_file(), name
        card = (ASSETS / facts.card).read_text(encoding="utf-8")
        assert f"`{name}`" in card, f"{facts.card} does not name {name}"
        metric, value = next(iter(facts.dev.items()))
        assert f"{value:.3f}" in card, f"{facts.card} lacks {name}'s dev {metric} {value:.3f}"
        # the figures measured on the model it was trained or quantised from: its training
        # dev metrics, which are the hold-out's for a model stopped early on a hold-out
        if facts.precision == "int8":
            assert facts.fp32_dev is not None, name
            trained = model.metadata.export["parity"]["fp32_dev_metrics"]
            reference = facts.holdout or facts.fp32_dev
        else:
            trained = model.metadata.training["dev_metrics"]
            reference = facts.holdout or facts.dev
        if facts.holdout is not None:  # and then the file says it stopped on another file
            assert model.metadata.training["data"]["dev"] != "dev.tsv", name
        for key, value in reference.items():
            assert abs(trained[key] - value) <= 0.003, (name, key, trained[key], value)
        if facts.smaller_than is not None:
            bigger = builtin_models()[facts.smaller_than]
            assert model.path.stat().st_size < bigger.stat().st_size, name


def test_aliases_and_builtin_facts(tmp_path: Path) -> None:
    from bilstm.core.errors import ModelLoadError
    from bilstm.runtime.builtin import ALIASES, builtin_facts, resolve_model

    for alias, name in ALIASES.items():
        assert resolve_model(alias) == builtin_models()[name]
        assert BiLSTM.load(alias, device="cpu", threads=1).metadata.export["precision"] == "int8"
    facts = builtin_facts(builtin_models()["pos-en"])
    assert facts is not None
    assert facts["name"] == "pos-en" and facts["aliases"] == ["pos-en-int8"]
    assert facts["precision"] == "int8" and facts["dev"]["accuracy"] > 0.9
    assert facts["fp32_dev"]["accuracy"] > 0.9 and Path(facts["card"]).is_file()
    copy = tmp_path / "sentiment.onnx"
    copy.write_bytes(builtin_models()["sentiment"].read_bytes())
    assert builtin_facts(copy) is None  # only the shipped file itself
    try:
        resolve_model("no-such-model")
    except ModelLoadError as exc:
        assert "pos-en-int8" in str(exc)
    else:
        raise AssertionError("an unknown name must be refused")


def test_sentiment_fast_is_the_distilled_small_model() -> None:
    """Half the hidden width of `sentiment`, int8, distilled from the same 5 teachers."""
    fast = BiLSTM.load("sentiment-fast", device="cpu", threads=1)
    full = BiLSTM.load("sentiment", device="cpu", threads=1)
    assert fast.metadata.export["precision"] == "int8"
    assert fast.metadata.model["hidden_size"] * 2 == full.metadata.model["hidden_size"]
    teachers = [f"sentiment-teacher{seed}" for seed in range(1, 6)]
    assert fast.metadata.training["data"]["teacher"]["checkpoints"] == teachers
    assert full.metadata.training["data"]["teacher"]["checkpoints"] == teachers
    assert fast.labels == full.labels
    # within a point of `sentiment` on the hold-out both stopped on (as measured when built)
    fp32_holdout = full.metadata.training["dev_metrics"]["accuracy"]
    assert fast.metadata.export["parity"]["fp32_dev_metrics"]["accuracy"] >= fp32_holdout - 0.01
    good, bad = fast.predict(
        ["A gorgeous, witty, seductive movie.", "A dull, lifeless and boring mess."]
    )
    assert good.label == "positive" and bad.label == "negative"
