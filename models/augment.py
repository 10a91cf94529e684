"""Synthetic training texts for distillation (`bilstm train classify --distill-augment N`).

A small student learns a large teacher best when the teacher labels many more inputs than
the labelled training set holds (the "transfer set"). Tang et al. 2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks", make them from the training
texts: each token is, with probability p_mask, replaced by the unknown token, or with
probability p_swap by another word; then, with probability p_ngram, only a random n-gram
(n in 1..5) of the result is kept. Each training text gives N such copies (duplicates, and
copies equal to the text itself, are dropped), which the teachers score once.

Tang et al. swap a word for another of the same part of speech. Here the replacement is
drawn from the unigram distribution of the training tokens of the same kind (a word for a
word, punctuation for punctuation): no tagger is needed, and an adjective may become a noun.

Everything is drawn from one `random.Random(seed)` in text order, so the same texts, settings
and seed give the same synthetic texts on every machine and Python version.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

from bilstm.core.errors import InputError
from bilstm.core.vocab import UNK

MASK = UNK
"""A masked token: the vocabulary's unknown token, which every vocabulary maps to UNK_ID and
which the tokenizer never produces from text (it splits "<unk>" into three tokens)."""

MAX_COPIES = 100
"""The most synthetic copies per text: teacher scoring, memory and each epoch grow with
N + 1 times the training set, so more than this is refused rather than left to run for hours."""

MAX_NGRAM = 5
"""The longest n-gram kept by the n-gram step (Tang et al.: n drawn from 1..5)."""


@dataclass(frozen=True)
class Augmentation:
    """How many synthetic copies of each training text to make, and how (Tang et al. 2019)."""

    copies: int
    """N: synthetic copies per training text (before duplicates are dropped); 0 makes none."""
    mask: float = 0.1
    """Per token: probability of replacing it with the unknown token."""
    swap: float = 0.1
    """Per token: probability of replacing it with a word drawn from the training tokens."""
    ngram: float = 0.25
    """Per copy: probability of keeping only a random n-gram (n in 1..5) of it."""
    seed: int = 0
    """Seed of the draws (the CLI passes the run's --seed)."""

    def __post_init__(self) -> None:
        if isinstance(self.copies, bool) or not isinstance(self.copies, int):
            raise InputError(f"--distill-augment {self.copies!r}: give a whole number of copies")
        if not 0 <= self.copies <= MAX_COPIES:
            raise InputError(
                f"--distill-augment {self.copies}: the number of synthetic copies per training "
                f"text must be 0 (none) to {MAX_COPIES}; 5-20 is the usual range"
            )
        for flag, value in (
            ("--augment-mask", self.mask),
            ("--augment-swap", self.swap),
            ("--augment-ngram", self.ngram),
        ):
            if not 0.0 <= value <= 1.0:
                raise InputError(f"{flag} {value}: a probability, from 0 to 1")
        if self.mask + self.swap > 1.0:
            raise InputError(
                f"--augment-mask {self.mask} + --augment-swap {self.swap} is over 1: they are "
                "the chances of the two things that may happen to a token; lower one of them"
            )


Synthetic = tuple[int, tuple[str, ...]]
"""One synthetic text: the index of the training text it came from, and its tokens."""


class _Pool:
    """Unigram draws of the training tokens of one kind (words or punctuation)."""

    def __init__(self, counts: Counter[str]) -> None:
        self.tokens = sorted(counts)  # sorted: the draws do not depend on dict order
        self.cumulative = list(accumulate(counts[t] for t in self.tokens))

    def draw(self, rng: random.Random) -> str:
        return self.tokens[bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


def _is_word(token: str) -> bool:
    return any(c.isalnum() for c in token)


def synthesize(texts: Sequence[Sequence[str]], aug: Augmentation) -> list[Synthetic]:
    """Up to `aug.copies` synthetic token sequences per text of `texts` (token lists).

    The result lists text 0's copies first, then text 1's, and so on; a copy equal to its
    text or to an earlier copy of the same text is dropped, so a text may give fewer than N
    (a one-word text often none). An empty text gives none.
    """
    if aug.copies == 0:
        return []
    counts: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for tokens in texts:
        for token in tokens:
            counts[_is_word(token)][token] += 1
    pools = {kind: _Pool(c) for kind, c in counts.items() if c}
    rng = random.Random(aug.seed)
    keep_all = aug.mask + aug.swap
    out: list[Synthetic] = []
    for index, tokens in enumerate(texts):
        if not tokens:
            continue
        kinds = [_is_word(t) for t in tokens]
        seen = {tuple(tokens)}
        for _ in range(aug.copies):
            copy = []
            for token, kind in zip(tokens, kinds, strict=True):
                x = rng.random()
                if x < aug.mask:
                    copy.append(MASK)
                elif x < keep_all:
                    copy.append(pools[kind].draw(rng))
                else:
                    copy.append(token)
            if rng.random() < aug.ngram:
                n = min(rng.randint(1, MAX_NGRAM), len(copy))
                start = rng.randrange(len(copy) - n + 1)
                copy = copy[start : start + n]
            key = tuple(copy)
            if key not in seen:
                seen.add(key)
                out.append((index, key))
    return out
