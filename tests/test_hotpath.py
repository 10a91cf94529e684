"""The lean scoring path gives exactly what the straightforward one gives.

Each fast piece is compared with the per-item code it replaces: many texts split in one
regex pass (`Tokenizer.keys_joined`, `TextEncoder.pack_texts`) against `keys_checked` text by
text, the one-gather padding (`PackedIds`) against `pad_batch`, the block line reader against
`readline`, and the matrix rounding against Python's `round(v, 6)`.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest

from bilstm.core import reader
from bilstm.core.batching import PackedIds, length_batches, length_order, pad_batch
from bilstm.core.preprocess import TextEncoder
from bilstm.core.tokenizer import DEFAULT_PATTERN, WHITESPACE_PATTERN, TokenizerConfig
from bilstm.core.vocab import Vocabulary

TRICKY = [
    "A gorgeous, witty movie.",
    "",
    "   ",
    "İstanbul'da ΟΔΟΣ.Β and ΑΣ.",  # lower-casing the whole text would split differently
    "Don't STOP -- it's rock'n'roll!",
    "line\nwith an LF inside",
    "tab\tand\x1cseparators\x0bhere",
    "w " * 40,  # over max_length
    "x" * 3000,  # over the huge-line guard (64 x max_length)
    "Émile ÉTÉ",
    "\x00\x01 control",
]


def _encoder(pattern: str, lowercase: bool = True, max_length: int = 30) -> TextEncoder:
    words = ["<pad>", "<unk>", "a", "movie", "w", "don't", "it's", "é", "émile", "été", "\n"]
    config = TokenizerConfig(lowercase=lowercase, pattern=pattern, max_length=max_length)
    return TextEncoder.create(config, Vocabulary(words), {})


def _texts(seed: int) -> list[str]:
    rng = random.Random(seed)
    parts = ["a", "A", "movie", "MOVIE", "w", "'", "’", ",", ".", " ", "  ", "é", "É", "Σ", "ß"]
    made = ["".join(rng.choice(parts) for _ in range(rng.randint(0, 50))) for _ in range(200)]
    return made + TRICKY


@pytest.mark.parametrize("pattern", [DEFAULT_PATTERN, WHITESPACE_PATTERN, r"[A-Za-z]+"])
@pytest.mark.parametrize("lowercase", [True, False])
def test_pack_texts_is_keys_checked_text_by_text(pattern: str, lowercase: bool) -> None:
    enc = _encoder(pattern, lowercase)
    for seed in range(3):
        texts = _texts(seed)
        checked = [enc.tokenizer.keys_checked(t) for t in texts]
        want_ids, want_lengths = pad_batch([enc.vocabulary.encode(k) for k, _ in checked])
        packing = enc.pack_texts(texts)
        if pattern not in (DEFAULT_PATTERN, WHITESPACE_PATTERN):
            assert packing is None  # other patterns are split text by text
            continue
        assert packing is not None
        packed, cut = packing
        assert cut == [c for _, c in checked]
        ids, lengths = packed.batch(np.arange(len(texts)))
        assert lengths.tolist() == want_lengths.tolist()
        assert ids.tolist() == want_ids.tolist()


def test_keys_checked_is_tokenize_cut() -> None:
    for pattern in (DEFAULT_PATTERN, WHITESPACE_PATTERN):
        tok = _encoder(pattern, max_length=7).tokenizer
        whole = _encoder(pattern, max_length=10_000).tokenizer
        for text in _texts(4):
            keys, cut = tok.keys_checked(text)
            full = whole.tokenize(text)
            assert keys == full[:7] and cut == (len(full) > 7)


def test_packed_batches_are_pad_batch() -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 50, rng.integers(0, 12)).tolist() for _ in range(300)]
    flat = np.array([i for s in seqs for i in s], dtype=np.int64)
    packed = PackedIds(flat, np.array([len(s) for s in seqs], dtype=np.int64))
    lengths = [len(s) for s in seqs]
    assert [b.tolist() for b in length_order(np.array(lengths), 16)] == length_batches(lengths, 16)
    for rows in length_batches(lengths, 16):
        nonempty = [r for r in rows if lengths[r]]
        if not nonempty:
            continue
        ids, lens = packed.batch(np.array(nonempty))
        want_ids, want_lens = pad_batch([seqs[r] for r in nonempty])
        assert ids.tolist() == want_ids.tolist() and lens.tolist() == want_lens.tolist()


def test_block_reader_matches_readline(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(1)
    pieces = [b"abc", b"\r", b"\n", b"\xef\xbb\xbf", b"\xff", "é".encode(), b"\xc3", b"x" * 30]
    for _ in range(400):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        limit = rng.choice([1, 5, 40, 1000])
        want = list(reader._lines_by_readline(io.BytesIO(data), limit))
        for block in (1, 7, 1 << 20):
            monkeypatch.setattr(reader, "_FILE_READ_BYTES", block)
            assert list(reader._lines_of(io.BytesIO(data), limit)) == want


def test_matrix_rounding_is_python_round() -> None:
    from bilstm.runtime.tasks.classify import _Scores

    rng = np.random.default_rng(2)
    values = np.concatenate(
        [
            rng.random(200_000, dtype=np.float32),
            rng.random(20_000, dtype=np.float32) * 1e-4,
            np.float32([0, 1, 0.0078125, 5e-7, 2.5e-6, 1e-7, np.inf, -0.5]),
        ]
    ).reshape(-1, 2)
    scores = _Scores(values, np.ones(len(values), bool), [1] * len(values), [False] * len(values))
    want = [[round(v, 6) for v in row] for row in values.tolist()]
    assert [[repr(v) for v in row] for row in scores.rounded()] == [
        [repr(v) for v in row] for row in want
    ]
