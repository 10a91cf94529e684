"""The Python API's contract for bad input and bad models (base install; a few need onnx).

- Everything `BiLSTM.load`/`predict` raise for bad input is a `BiLSTMError` subclass naming
  what was wrong (item index and type, the allowed choices).
- A model whose metadata `task` disagrees with its graph is refused at load.
- Forecast windows follow the CLI's rule: at least `window` rows, the last `window` used.
- Cloze reports a text without a blank per item; the others are scored.
- Tag models split raw text with the word tokenizer on request, and a text cut at the
  model's max length says so in its prediction and record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_hostile_models import VOCAB, metadata_doc, needs_onnx, tiny_model

from bilstm.core.errors import BiLSTMError, DeviceError, InputError, MetadataError
from bilstm.core.reader import Line
from bilstm.runtime import BiLSTM
from bilstm.runtime.records import forecast_records, text_records

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # the runtime-only install
    onnx = None


@pytest.fixture(scope="module")
def sentiment() -> BiLSTM:
    return BiLSTM.load("sentiment", device="cpu", threads=1)


@pytest.fixture(scope="module")
def pos() -> BiLSTM:
    return BiLSTM.load("pos-en", device="cpu", threads=1)


@pytest.fixture(scope="module")
def cloze() -> BiLSTM:
    return BiLSTM.load("cloze-en", device="cpu", threads=1)


@pytest.fixture(scope="module")
def demand() -> BiLSTM:
    return BiLSTM.load("elecdemand-h1", device="cpu", threads=1)


# -- 3. bad input is always a BiLSTMError -------------------------------------------------------

BAD_ITEMS = {"None": (None, "NoneType"), "int": (123, "int"), "bytes": (b"x", "bytes")}


@pytest.mark.parametrize("name", ["sentiment", "pos", "cloze"])
@pytest.mark.parametrize(("item", "kind"), list(BAD_ITEMS.values()), ids=list(BAD_ITEMS))
def test_bad_text_items_are_input_errors_naming_index_and_type(
    name: str, item: Any, kind: str, request: pytest.FixtureRequest
) -> None:
    model: BiLSTM = request.getfixturevalue(name)
    with pytest.raises(InputError) as info:
        model.predict(["fine text ___", item])
    assert "input 1" in str(info.value) and kind in str(info.value)
    if isinstance(item, bytes):
        assert "decode" in str(info.value)


@pytest.mark.parametrize("inputs", [None, 123, b"text", {"a": 1}, "one text"])
@pytest.mark.parametrize("name", ["sentiment", "pos", "cloze", "demand"])
def test_predict_on_something_that_is_no_list_is_an_input_error(
    name: str, inputs: Any, request: pytest.FixtureRequest
) -> None:
    model: BiLSTM = request.getfixturevalue(name)
    with pytest.raises(InputError):
        model.predict(inputs)


def test_other_iterables_of_texts_still_work(sentiment: BiLSTM) -> None:
    texts = ["A gorgeous, witty movie.", "Dull."]
    expected = sentiment.predict(texts)
    assert sentiment.predict(tuple(texts)) == expected
    assert sentiment.predict(np.array(texts)) == expected
    assert sentiment.predict(iter(texts)) == expected


def test_bad_tokens_and_windows_are_input_errors(pos: BiLSTM, demand: BiLSTM) -> None:
    with pytest.raises(InputError, match="input 0: token 1 is int"):
        pos.predict([["fine", 1]])
    with pytest.raises(InputError, match="input 0 is int"):
        pos.predict([7])
    for bad in ([None], [["a", "b"]], [[[None] * 3] * 48]):
        with pytest.raises(InputError):
            demand.predict(bad)


def test_bad_options_are_bilstm_errors_naming_the_choices(sentiment: BiLSTM) -> None:
    with pytest.raises(DeviceError, match=r"auto\|cpu\|cuda.*'tpu'"):
        BiLSTM.load("sentiment", device="tpu")
    with pytest.raises(InputError, match=r"none\|basic\|extended\|all"):
        BiLSTM.load("sentiment", device="cpu", optimization="fast")
    with pytest.raises(DeviceError, match="threads"):
        BiLSTM.load("sentiment", device="cpu", threads="2")  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match="device_id"):
        BiLSTM.load("sentiment", device="cpu", device_id=-1)
    for size in (0, "8", 2.5):
        with pytest.raises(InputError, match="batch_size"):
            sentiment.predict(["text"], batch_size=size)  # type: ignore[arg-type]


def test_bad_top_k_and_tokenize_are_input_errors(
    sentiment: BiLSTM, cloze: BiLSTM, pos: BiLSTM
) -> None:
    for k in (0, -1, "3"):
        with pytest.raises(InputError, match="top_k"):
            cloze.predict(["the ___ sat"], top_k=k)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="tag models only"):
        sentiment.predict(["text"], tokenize="words")
    with pytest.raises(InputError, match=r"spaces\|words"):
        pos.predict(["text"], tokenize="model")


# -- 4. forecast windows: the CLI's rule --------------------------------------------------------


def test_forecast_windows_need_the_model_window_and_use_its_last_rows(demand: BiLSTM) -> None:
    rng = np.random.default_rng(0)
    series = rng.normal(size=(demand.window + 10, len(demand.columns))).astype(np.float32)
    series[:, 0] += 5000
    for rows in (1, 10, demand.window - 1):
        with pytest.raises(InputError, match=f"fewer than the model's window of {demand.window}"):
            demand.predict(series[:rows])
    exact = demand.predict(series[-demand.window :])
    assert demand.predict(series) == exact  # longer: only the last `window` rows are used
    assert demand.predict(np.stack([series[-demand.window :]] * 2)) == exact * 2
    # ... which is what bilstm-run gives for the same series
    (record,) = forecast_records(
        demand, series, list(range(len(series))), False, False, 3.0, batch_size=8
    )
    assert record["forecast"] == [round(v, 6) for v in exact[0].values]


# -- 5. cloze: one bad text does not sink the batch ---------------------------------------------


def test_cloze_reports_per_item(cloze: BiLSTM) -> None:
    texts = ["The cat sat on the ___.", "no blank here", "", "two ___ and ___", "I ___ it."]
    out = cloze.predict(texts, top_k=3)
    assert len(out) == len(texts)
    assert out[0].error is None and len(out[0].candidates) == 3 and out[0].word
    assert out[1].candidates == [] and "no '___' blank" in (out[1].error or "")
    assert out[1].word is None
    assert out[2].candidates == [] and out[2].error is None
    assert "found 2 blanks" in (out[3].error or "")
    alone = cloze.predict([texts[0], texts[4]], top_k=3)
    assert [out[0], out[4]] == alone


# -- 6. tagging raw text, truncation ------------------------------------------------------------

RAW = "Hello, world! I can't go."


def test_tag_raw_text_with_the_word_tokenizer(pos: BiLSTM) -> None:
    (spaces,) = pos.predict([RAW])
    assert spaces.tokens == ["Hello,", "world!", "I", "can't", "go."]  # the default
    (words,) = pos.predict([RAW], tokenize="words")
    assert words.tokens == ["Hello", ",", "world", "!", "I", "can't", "go", "."]
    tags = dict(zip(words.tokens, words.tags, strict=True))
    assert tags["world"] != "PROPN" and tags[","] == tags["!"] == tags["."] == "PUNCT"
    lines = [Line(1, RAW)]
    (record,) = text_records(pos, lines, 8, 5, False, tokenize="words")
    assert record == {"line": 1, "tokens": words.tokens, "tags": words.tags}
    (record,) = text_records(pos, lines, 8, 5, False)
    assert record["tokens"] == spaces.tokens


def test_truncation_is_reported_only_when_it_happens(sentiment: BiLSTM, pos: BiLSTM) -> None:
    limit = 256
    long_text = " ".join(["good"] * (limit + 40))
    exact = " ".join(["good"] * limit)
    (cut, full) = sentiment.predict([long_text, exact])
    assert cut.truncated and cut.num_tokens == limit
    assert not full.truncated and full.num_tokens == limit
    lines = [Line(1, long_text), Line(2, exact), Line(3, "")]
    records = text_records(sentiment, lines, 8, 5, True)
    assert records[0]["truncated"] == limit
    assert list(records[1]) == ["line", "label", "probabilities"]
    assert records[2] == {"line": 3, "label": None, "probabilities": None}
    tagged = text_records(pos, lines, 8, 5, False)
    assert tagged[0]["truncated"] == limit and len(tagged[0]["tokens"]) == limit
    assert list(tagged[1]) == ["line", "tokens", "tags"]
    (as_list,) = pos.predict([long_text.split()])
    assert as_list.truncated and len(as_list.tags) == limit


# -- 2. the metadata's task must be the graph's -------------------------------------------------


def tag_graph(path: Path, meta: dict[str, Any]) -> Path:
    """A tag-shaped model: input_ids[batch, time] -> logits[batch, time, 2]."""
    rng = np.random.default_rng(0)
    emb = numpy_helper.from_array(rng.normal(size=(len(VOCAB), 2)).astype(np.float32), "emb")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["emb", "input_ids"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tag",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "time"]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "time", 2])
            for n in ("logits", "probabilities")
        ],
        [emb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"bilstm": json.dumps(meta)})
    onnx.save_model(model, str(path))
    return path


def forecast_graph(path: Path, steps: int, horizon: int) -> Path:
    """features[batch, time, 1] -> mean over time -> forecast[batch, steps]."""
    weights = numpy_helper.from_array(np.ones((1, steps), np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["features"], ["m"], axes=[1], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["forecast"]),
        ],
        "forecast",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "time", 1]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, ["batch", steps])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = metadata_doc(
        task="forecast",
        labels=[],
        vocabulary=[],
        tokenizer=None,
        task_config={
            "window": 4,
            "horizon": horizon,
            "columns": ["y"],
            "target": "y",
            "residual_mean": [0.0] * horizon,
            "residual_std": [1.0] * horizon,
        },
    )
    helper.set_model_props(model, {"bilstm": json.dumps(meta)})
    onnx.save_model(model, str(path))
    return path


def refused_at_load(path: Path, *words: str) -> str:
    with pytest.raises(MetadataError) as info:
        BiLSTM.load(path, device="cpu", threads=1)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message, message
    return message


@needs_onnx
def test_classify_graph_with_tag_metadata_is_refused_at_load(tmp_path: Path) -> None:
    path = tiny_model(tmp_path / "m.onnx", metadata_doc(task="tag"))
    refused_at_load(path, "'tag'", "[batch, time, tags]", "['batch', 2]")


@needs_onnx
def test_tag_graph_with_classify_metadata_is_refused_at_load(tmp_path: Path) -> None:
    path = tag_graph(tmp_path / "m.onnx", metadata_doc(task="classify"))
    refused_at_load(path, "'classify'", "[batch, classes]", "['batch', 'time', 2]")
    same = tag_graph(tmp_path / "ok.onnx", metadata_doc(task="tag"))
    (pred,) = BiLSTM.load(same, device="cpu", threads=1).predict(["good film"])
    assert pred.tokens == ["good", "film"] and len(pred.tags) == 2


@needs_onnx
def test_forecast_horizon_must_match_the_graph(tmp_path: Path) -> None:
    refused_at_load(forecast_graph(tmp_path / "m.onnx", 3, 2), "'task_config.horizon' is 2")
    model = BiLSTM.load(forecast_graph(tmp_path / "ok.onnx", 2, 2), device="cpu", threads=1)
    (fc,) = model.predict(np.ones((4, 1), np.float32))
    assert fc.values == [1.0, 1.0]


def test_every_error_above_is_a_bilstm_error() -> None:
    for kind in (InputError, DeviceError, MetadataError):
        assert issubclass(kind, BiLSTMError)
