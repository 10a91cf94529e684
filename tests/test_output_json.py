"""`bilstm-run`'s JSON lines are exactly `json.dumps(record, ensure_ascii=False)`.

The writer joins classify records itself (faster than json for the common record); these tests
hold it to json's bytes on tricky labels and numbers, and check the shortcut is really taken.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bilstm.core.preprocess import TextEncoder
from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
from bilstm.core.vocab import Vocabulary
from bilstm.runtime.output import Format, RecordWriter, _JsonLine

TRICKY_LABELS = [
    "negative",
    'say "no"',
    "back\\slash",
    "tab\there",
    "new\nline",
    "\x00\x01\x1f\x7f",
    "\u2028\u2029",
    "café 🙂 İß",
    "\ud800",  # a lone surrogate: json writes it as is with ensure_ascii=False
    "",
]
NUMBERS = [0.0, -0.0, 1.0, 0.5, 0.30242, 1e-06, 1.5e-07, 123456789.0, 1e16, 1e-300, 5e-324]


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False)


@pytest.mark.parametrize("label", TRICKY_LABELS)
def test_classify_record_matches_json(label: str) -> None:
    encode = _JsonLine()
    probs = {label: 0.30242, "other": 0.69758}
    for record in (
        {"line": 7, "label": label, "probabilities": probs},
        {"line": 1, "label": None, "probabilities": None},
        {"line": 2, "label": label, "probabilities": {}},
        {
            "line": 3,
            "label": label,
            "probabilities": {f"{label}{i}": n for i, n in enumerate(NUMBERS)},
        },
    ):
        assert encode(record) == dumps(record)
        assert encode(record) == dumps(record)  # again, from the cache


@pytest.mark.parametrize(
    "record",
    [
        {"line": 1, "label": "a", "probabilities": {"a": math.nan}},
        {"line": 1, "label": "a", "probabilities": {"a": math.inf, "b": -math.inf}},
        {"line": True, "label": "a", "probabilities": None},
        {"line": 1, "label": 3, "probabilities": None},
        {"line": 1, "label": "a", "probabilities": {1: 0.5, None: 0.5}},
        {"line": 1, "label": "a", "probabilities": {"a": 1}},
        {"line": 1, "label": "a", "probabilities": [0.5, 0.5]},
        {"label": "a", "line": 1, "probabilities": None},
        {"line": 1, "label": "a"},
        {"line": 1, "error": 'invalid UTF-8 "\\xff"'},
        {"line": 1, "tokens": ["A", "b"], "tags": ["X", "Y"], "confidences": [0.5, 1.0]},
    ],
)
def test_other_records_fall_back_to_json(record: dict[str, Any]) -> None:
    assert _JsonLine()(record) == dumps(record)


def test_float_subclass_falls_back_to_json() -> None:
    np = pytest.importorskip("numpy")
    record = {"line": 1, "label": "a", "probabilities": {"a": np.float64(0.5)}}
    assert (
        _JsonLine()(record)
        == dumps(record)
        == '{"line": 1, "label": "a", "probabilities": {"a": 0.5}}'
    )


@settings(max_examples=200, deadline=None)
@given(
    line=st.integers(min_value=-(2**70), max_value=2**70),
    label=st.one_of(st.none(), st.text()),
    probs=st.one_of(st.none(), st.dictionaries(st.text(), st.floats(allow_nan=True), max_size=4)),
)
def test_any_classify_shaped_record_matches_json(
    line: int, label: str | None, probs: dict[str, float] | None
) -> None:
    record = {"line": line, "label": label, "probabilities": probs}
    assert _JsonLine()(record) == dumps(record)


def test_writer_takes_the_shortcut_for_classify_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above would pass if the writer always called json: make sure it does not."""
    record = {"line": 1, "label": "neg", "probabilities": {"neg": 0.25, "pos": 0.75}}
    out = io.StringIO()
    writer = RecordWriter(out, Format.jsonl, ["line", "label"])

    def fail(obj: Any) -> str:
        raise AssertionError(f"json encoder called for {obj!r}")

    expected = (dumps(record) + "\n") * 2
    writer.write(record)  # caches the labels' JSON
    monkeypatch.setattr(writer._json, "_encode", fail)  # the encoder the writer holds
    writer.write(record)
    assert out.getvalue() == expected
    with pytest.raises(AssertionError, match="json encoder called"):
        writer.write({**record, "extra": 1})  # another record shape goes to json


@pytest.mark.parametrize("lowercase", [True, False])
def test_word_ids_are_the_normalised_tokens_ids(lowercase: bool) -> None:
    """`TextEncoder.word_ids` (one comprehension) equals normalise-then-encode."""
    tokens = ["The", "the", "İstanbul", "istanbul", "STRASSE", "straße", "ǅ", "unknown", "", "A"]
    vocab = Vocabulary(["<pad>", "<unk>", "the", "The", "i̇stanbul", "straße", "ǆ", "a"])
    tok = Tokenizer(TokenizerConfig(lowercase=lowercase))
    enc = TextEncoder(tok, vocab)
    expected = vocab.encode([tok.normalize(t) for t in tokens])
    assert enc.word_ids(tokens) == expected
    assert enc.word_ids([]) == []
    assert len(set(expected)) > 2  # the case matters to the result: the test can fail
