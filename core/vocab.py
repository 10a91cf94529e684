"""Token <-> id mapping shared by training and inference."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1


class Vocabulary:
    """An ordered list of tokens; a token's id is its index. Id 0 is padding, id 1 unknown."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if len(tokens) < 2 or tokens[PAD_ID] != PAD or tokens[UNK_ID] != UNK:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}")
        self.tokens: list[str] = list(tokens)
        # dict(zip) builds the index in C: a model's vocabulary is indexed at every load.
        self._ids = dict(zip(self.tokens, range(len(self.tokens)), strict=True))
        if len(self._ids) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(
        cls,
        texts: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Vocabulary of the tokens seen at least `min_freq` times, most frequent first.

        Ties are broken alphabetically so that the same data always gives the same ids.
        `max_size` counts the two special tokens.
        """
        counts: Counter[str] = Counter()
        for tokens in texts:
            counts.update(tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2)]
        return cls([PAD, UNK, *ranked])

    @property
    def index(self) -> Mapping[str, int]:
        """Token -> id for the tokens in the vocabulary (read only; unknown tokens are absent).

        Hot loops bind `vocabulary.index.get` once and look ids up in C; `encode` and
        `id_of` are the per-call forms.
        """
        return self._ids

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def id_of(self, token: str) -> int:
        """Id of `token`, or the unknown id."""
        return self._ids.get(token, UNK_ID)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of `tokens` (unknown tokens map to `UNK_ID`)."""
        get = self._ids.get
        return [get(t, UNK_ID) for t in tokens]
