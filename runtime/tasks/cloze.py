"""Fill in the blank: the most probable words for a `___` in a text, from both sides."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bilstm.core.errors import InputError
from bilstm.core.preprocess import MASK, blank_position
from bilstm.core.vocab import UNK_ID
from bilstm.runtime import metadata as md
from bilstm.runtime.metadata import ModelMetadata
from bilstm.runtime.model import DEFAULT_TOP_K, _as_list, _texts
from bilstm.runtime.predictions import ClozePrediction
from bilstm.runtime.tasks.text import TextModel, json_column, no_options, object_column
from bilstm.runtime.taskspec import TEXT_RUN_OPTIONS, RunOptions, TaskSpec, id_inputs

CLOZE_SEED = 13
"""Seed of the blanks `evaluate` picks, so that two evaluations ask the same questions."""


class ClozeQuestion(NamedTuple):
    """One blank that `ClozeModel.evaluate` (and `bilstm plot eval`) asks."""

    tokens: list[str]
    """The line's tokens, the blanked word replaced by the mask token."""
    position: int
    """Index of the blank in `tokens`."""
    answer: int
    """Vocabulary id of the word that was blanked."""


SPEC = TaskSpec(
    name="cloze",
    inputs=id_inputs(md.MASK_POSITIONS),
    outputs=(md.LOGITS, md.PROBABILITIES),
    output_axes=("batch", "vocabulary"),
    text_input=True,
    needs_labels=False,
    per_token=False,
    variants=True,
    run_options=TEXT_RUN_OPTIONS | {"top_k"},
)


class ClozeModel(TextModel):
    """A fill-in-the-blank model: `fill(texts)` gives candidate words for each `___`."""

    SPEC = SPEC
    STREAM_OPTIONS = ("top_k",)

    @classmethod
    def output_width(cls, meta: ModelMetadata) -> tuple[str, int | None]:
        return "vocabulary", len(meta.vocabulary)

    def _width(self) -> int:
        return len(self.metadata.vocabulary)

    def fill(
        self, texts: Sequence[str], top_k: int = DEFAULT_TOP_K, batch_size: int | None = None
    ) -> list[ClozePrediction]:
        """Top-k words for the single `___` blank of each text, one prediction per text.

        A text without a blank, or with several, gets no candidates and `error` saying why
        (the others are scored); an empty text gets no candidates and no error.
        """
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise InputError(f"top_k must be an integer >= 1, got {top_k!r}")
        items = _texts(texts)
        token_lists, positions, problems = self.cloze_inputs(items)
        probs = self._text_outputs(token_lists, self._batch(batch_size), positions)
        out = []
        for text, p, problem in zip(items, probs, problems, strict=True):
            if p is not None:
                out.append(self.candidates(p, top_k))
            elif not text.strip():
                out.append(ClozePrediction(candidates=[]))
            else:
                out.append(ClozePrediction(candidates=[], error=problem or "no tokens"))
        return out

    def cloze_inputs(
        self, texts: Sequence[str]
    ) -> tuple[list[list[str]], list[int], list[str | None]]:
        """Per text: tokens with the blank replaced by the mask token (empty when there is no
        usable blank), the blank's position, and what is wrong with the text (None if fine)."""
        token_lists: list[list[str]] = []
        positions: list[int] = []
        problems: list[str | None] = []
        for toks in self.tokens(texts):
            try:
                pos = blank_position(toks)
            except ValueError as exc:
                pos, problem = None, str(exc)
            else:
                problem = "no '___' blank to fill (write it as a separate word)"
            if pos is None:
                token_lists.append([])
                positions.append(0)
                problems.append(problem)
                continue
            toks[pos] = MASK
            token_lists.append(toks)
            positions.append(pos)
            problems.append(None)
        return token_lists, positions, problems

    def probability_rows(
        self, texts: Sequence[str], batch_size: int
    ) -> tuple[list[np.ndarray | None], list[int]]:
        tokens, positions, _ = self.cloze_inputs(texts)
        return self._text_outputs(tokens, batch_size, positions), [len(t) for t in tokens]

    def candidates(self, probs: np.ndarray, top_k: int) -> ClozePrediction:
        """The top-k real words of a probability row over the vocabulary."""
        vocab = self.metadata.vocabulary
        order = np.argsort(-probs, kind="stable")
        picked = [
            (vocab[i], float(probs[i]))
            for i in order[: top_k + 3]
            if i > UNK_ID and vocab[i] != MASK
        ]
        return ClozePrediction(candidates=picked[:top_k])

    def predict(
        self, inputs: Any, batch_size: int | None = None, **options: Any
    ) -> list[ClozePrediction]:
        """`fill`; takes `top_k` (default 5)."""
        no_options(self, options, allowed=("top_k",))
        top_k = options.get("top_k")
        return self.fill(_as_list(inputs), DEFAULT_TOP_K if top_k is None else top_k, batch_size)

    def _records(
        self, texts: Sequence[str], numbers: Sequence[int], opts: RunOptions
    ) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for number, p in zip(numbers, self.fill(texts, opts.top_k, opts.batch_size), strict=True):
            if p.error is not None:
                records.append({"line": number, "error": p.error})
                continue
            records.append(
                {
                    "line": number,
                    "word": p.word,
                    "candidates": [[w, round(q, 6)] for w, q in p.candidates],
                }
            )
        return records

    def tsv_columns(self, opts: RunOptions) -> list[str]:
        return ["line", "word", "candidates", "error"]

    def frame_column_names(self, probabilities: bool, as_json: bool) -> list[str]:
        probs = [] if as_json or not probabilities else ["candidate_probabilities"]
        return ["word", "candidates", *probs]

    def frame_columns(
        self, records: Sequence[dict[str, Any]], probabilities: bool, as_json: bool
    ) -> dict[str, np.ndarray]:
        cols = {"word": object_column([r.get("word") for r in records])}
        if as_json:
            cols["candidates"] = json_column(records, "candidates")
            return cols
        cands = [r.get("candidates") for r in records]
        cols["candidates"] = object_column(
            [None if c is None else [w for w, _ in c] for c in cands]
        )
        if probabilities:
            cols["candidate_probabilities"] = object_column(
                [None if c is None else [p for _, p in c] for c in cands]
            )
        return cols

    def questions(self, data: Path) -> list[ClozeQuestion]:
        """The blanks `evaluate` asks on `data` (one text per line): one per line with two or
        more tokens and a known word, at a known word drawn with `CLOZE_SEED`, so that every
        evaluation and picture of the same file asks the same questions."""
        import random

        from bilstm.core.datasets import read_text_lines

        rng = random.Random(CLOZE_SEED)
        asked = []
        for text in read_text_lines(data):
            toks = self.tokens([text])[0]
            ids = self.encoder.word_ids(toks)
            known = [i for i, t in enumerate(ids) if t > UNK_ID and toks[i] != MASK]
            if len(toks) < 2 or not known:
                continue
            pos = rng.choice(known)
            toks[pos] = MASK
            asked.append(ClozeQuestion(toks, pos, ids[pos]))
        return asked

    def evaluate(
        self, data: Path, batch_size: int, tag_column: str = "upos", top_k: int = DEFAULT_TOP_K
    ) -> dict[str, Any]:
        """One blank per line at a seeded random known word; top-1/top-k accuracy."""
        from bilstm.core.metrics import topk_accuracy

        asked = self.questions(data)
        gold = [q.answer for q in asked]
        probs = self._text_outputs(
            [q.tokens for q in asked], batch_size, [q.position for q in asked]
        )
        vocab_index = {w: i for i, w in enumerate(self.metadata.vocabulary)}
        ranked = [
            [vocab_index[w] for w, _ in self.candidates(p, max(top_k, 5)).candidates]
            for p in probs
            if p is not None
        ]
        ks = sorted({1, 5, top_k})
        return topk_accuracy(gold, ranked, ks) | {"questions": len(gold)}
