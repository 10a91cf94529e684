"""Tokenizer and vocabulary: the one preprocessing path shared by training and inference."""

from __future__ import annotations

import pytest

from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
from bilstm.core.vocab import PAD_ID, UNK_ID, Vocabulary


def test_tokenizer_words_punctuation_and_contractions() -> None:
    tok = Tokenizer()
    assert tok.tokenize("It's NOT a bad film, really!") == [
        "it's",
        "not",
        "a",
        "bad",
        "film",
        ",",
        "really",
        "!",
    ]
    assert tok.tokenize("Café déjà-vu") == ["café", "déjà", "-", "vu"]
    assert tok.tokenize("") == []
    assert tok.tokenize("  \t ") == []


def test_tokenizer_case_and_truncation() -> None:
    tok = Tokenizer(TokenizerConfig(lowercase=False, max_length=3))
    assert tok.tokenize("One Two Three Four") == ["One", "Two", "Three"]


def test_vocabulary_is_deterministic_and_reserves_ids() -> None:
    texts = [["b", "a", "c"], ["a", "b"], ["a"]]
    vocab = Vocabulary.build(texts)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b", "c"]
    assert vocab.encode(["a", "zzz", "c"]) == [2, UNK_ID, 4]
    assert vocab.id_of("<pad>") == PAD_ID
    assert Vocabulary.build(texts, min_freq=2).tokens == ["<pad>", "<unk>", "a", "b"]
    assert Vocabulary.build(texts, max_size=3).tokens == ["<pad>", "<unk>", "a"]


def test_vocabulary_rejects_bad_layout() -> None:
    with pytest.raises(ValueError):
        Vocabulary(["a", "b"])


def test_training_and_runtime_give_the_same_ids(trained, exported) -> None:  # type: ignore[no-untyped-def]
    """The ids the model saw in training are exactly those the runtime feeds it."""
    from bilstm.runtime import BiLSTM

    _, ckpt = trained
    model = BiLSTM.load(exported, device="cpu", threads=1)
    texts = ["Great fun, lovely cast!", "UNSEEN words éà and \u00a0spaces", "dull."]
    tok = Tokenizer(ckpt.tokenizer)
    expected = [ckpt.vocabulary.encode(tok.tokenize(t)) for t in texts]
    assert model.encode(texts) == expected
    assert model.vocabulary.tokens == ckpt.vocabulary.tokens
