"""Text -> model arrays for the text tasks, shared by training and inference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any

import numpy as np

from bilstm.core.batching import PackedIds, pad_batch
from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
from bilstm.core.vocab import PAD_ID, UNK_ID, Vocabulary

MASK = "<mask>"
BLANK = "___"


@dataclass
class TextEncoder:
    """Tokenizer + vocabularies: the whole preprocessing of a text model."""

    tokenizer: Tokenizer
    vocabulary: Vocabulary
    chars: Vocabulary | None = None
    """Character vocabulary of the character CNN (tagging), or None."""
    max_word_length: int = 20
    _separated: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        tokenizer: TokenizerConfig,
        vocabulary: Vocabulary | Sequence[str],
        task_config: dict[str, Any],
    ) -> TextEncoder:
        """The encoder of a model from its stored settings (metadata or checkpoint)."""
        chars = task_config.get("char_vocabulary")
        vocab = vocabulary if isinstance(vocabulary, Vocabulary) else Vocabulary(vocabulary)
        return cls(
            Tokenizer(tokenizer),
            vocab,
            Vocabulary(chars) if chars else None,
            int(task_config.get("max_word_length", 20)),
        )

    def split(self, text: str) -> list[str]:
        """Tokens as written (case kept)."""
        return self.tokenizer.split(text)

    def word_ids(self, tokens: Sequence[str]) -> list[int]:
        """Vocabulary ids of tokens as written (normalised first, as `Tokenizer.normalize`)."""
        # One comprehension, no call per token: this runs for every token scored, and calling
        # `normalize` through a generator made it 1.6x slower (benchmarks/findings.md, section 1).
        get = self.vocabulary.index.get
        if self.tokenizer.config.lowercase:
            return [get(t.lower(), UNK_ID) for t in tokens]
        return [get(t, UNK_ID) for t in tokens]

    def pack(self, token_lists: Sequence[Sequence[str]], keys: bool = False) -> PackedIds:
        """The word ids of every token list, end to end, ready to be batched (`PackedIds`).

        `keys=True`: the lists hold vocabulary keys already (`Tokenizer.keys_checked`), so
        they are not normalised again. One `map` over all tokens runs the lookups in C.
        """
        flat: Sequence[str] = list(chain.from_iterable(token_lists))
        if not keys and self.tokenizer.config.lowercase:
            flat = [t.lower() for t in flat]
        get = self.vocabulary.index.get
        lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        ids = np.fromiter(map(get, flat, repeat(UNK_ID)), dtype=np.int64, count=len(flat))
        return PackedIds(ids, lengths)

    def pack_texts(self, texts: Sequence[str]) -> tuple[PackedIds, list[bool]] | None:
        """The word ids of texts split as `Tokenizer.keys_checked` splits them, cut at
        `max_length`, and whether each was cut: the whole list in one regex pass and one
        lookup (`Tokenizer.keys_joined`). None when the tokenizer cannot split that way."""
        joined = self.tokenizer.keys_joined(texts)
        if joined is None:
            return None
        keys, others = joined
        limit = self.tokenizer.config.max_length
        get = self._separated_ids().get
        ids = np.fromiter(map(get, keys, repeat(UNK_ID)), dtype=np.int64, count=len(keys))
        # Each text's keys lie between two separators (-1); the first text starts at 0.
        bounds = np.empty(len(texts) + 1, dtype=np.int64)
        bounds[0] = -1
        bounds[1:-1] = np.flatnonzero(ids < 0)
        bounds[-1] = len(ids)
        starts = bounds[:-1] + 1
        counts = bounds[1:] - starts
        cut = counts > limit
        lengths = np.minimum(counts, limit)
        if others:  # their keys go after the joined ones, each text pointing at its own
            checked = [self.tokenizer.keys_checked(texts[i]) for i in others]
            extra = self.pack([k for k, _ in checked], keys=True)
            rows = np.asarray(others, dtype=np.int64)
            starts[rows] = extra.starts + len(ids)
            lengths[rows] = extra.lengths
            cut[rows] = [c for _, c in checked]
            ids = np.concatenate([ids, extra.flat])
        return PackedIds(ids, lengths, starts), cut.tolist()

    def _separated_ids(self) -> dict[str, int]:
        """The vocabulary's ids with "\n" (which no token holds) as -1: the separator of
        `Tokenizer.keys_joined`. Built once per encoder."""
        if self._separated is None:
            self._separated = {**self.vocabulary.index, "\n": -1}
        return self._separated

    def char_ids(self, tokens: Sequence[str], width: int) -> np.ndarray:
        """[width, max_word_length] int64 character ids of tokens (case kept), zero-padded."""
        assert self.chars is not None
        out = np.full((width, self.max_word_length), PAD_ID, dtype=np.int64)
        get = self.chars.index.get
        for i, token in enumerate(tokens[:width]):
            ids = [get(c, UNK_ID) for c in token[: self.max_word_length]]
            out[i, : len(ids)] = ids
        return out

    def batch(self, token_lists: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
        """Padded `input_ids`, `lengths` and, with character features, `char_ids`."""
        ids, lengths = pad_batch([self.word_ids(t) for t in token_lists])
        arrays = {"input_ids": ids, "lengths": lengths}
        if self.chars is not None:
            width = ids.shape[1]
            arrays["char_ids"] = (
                np.stack([self.char_ids(t, width) for t in token_lists])
                if token_lists
                else np.zeros((0, width, self.max_word_length), np.int64)
            )
        return arrays


def build_char_vocabulary(token_lists: Sequence[Sequence[str]], min_freq: int = 1) -> Vocabulary:
    """Characters of the training tokens (case kept), most frequent first."""
    return Vocabulary.build((list(t) for tokens in token_lists for t in tokens), min_freq=min_freq)


def blank_position(tokens: Sequence[str]) -> int | None:
    """Index of the single `___` blank among tokens, None if there is none.

    Raises ValueError when there are several blanks.
    """
    found = [i for i, t in enumerate(tokens) if t == BLANK]
    if len(found) > 1:
        raise ValueError(f"found {len(found)} blanks '{BLANK}', expected exactly one")
    return found[0] if found else None
