"""Sequence tagging: a tag (and its probability) per token."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bilstm.core.errors import InputError
from bilstm.core.tokenizer import DEFAULT_PATTERN, Tokenizer, TokenizerConfig
from bilstm.runtime import metadata as md
from bilstm.runtime.model import DEFAULT_TOP_K, _as_list
from bilstm.runtime.predictions import TagPrediction
from bilstm.runtime.tasks.text import TextModel, json_column, no_options, object_column
from bilstm.runtime.taskspec import TEXT_RUN_OPTIONS, RunOptions, TaskSpec, id_inputs

TOKENIZE_SPACES, TOKENIZE_WORDS = "spaces", "words"
TOKENIZE_CHOICES = (TOKENIZE_SPACES, TOKENIZE_WORDS)
"""How `tag` splits a string: the model's own tokenizer (whitespace for tag models) or the
built-in word tokenizer."""

SPEC = TaskSpec(
    name="tag",
    inputs=id_inputs(),
    outputs=(md.LOGITS, md.PROBABILITIES),
    output_axes=("batch", "time", "tags"),
    text_input=True,
    needs_labels=True,
    per_token=True,
    variants=True,
    run_options=TEXT_RUN_OPTIONS | {"probabilities", "tokenize"},
)


class Tagger(TextModel):
    """A sequence tagger: `tag(sentences)` gives a tag per token."""

    SPEC = SPEC
    STREAM_OPTIONS = ("probabilities", "tokenize")

    def _word_tokenizer(self) -> Tokenizer:
        """The built-in word tokenizer with this model's settings (`tag(tokenize="words")`)."""
        config = self.encoder.tokenizer.config
        return Tokenizer(TokenizerConfig(config.lowercase, DEFAULT_PATTERN, config.max_length))

    def _split(
        self, sentences: Sequence[str | Sequence[str]], tokenize: str
    ) -> list[tuple[list[str], bool]]:
        """Each sentence's tokens (cut at max length) and whether it was cut."""
        if tokenize not in TOKENIZE_CHOICES:
            raise InputError(
                f"tokenize must be one of {'|'.join(TOKENIZE_CHOICES)}, got {tokenize!r}"
            )
        tokenizer = (
            self.encoder.tokenizer if tokenize == TOKENIZE_SPACES else self._word_tokenizer()
        )
        max_len = tokenizer.config.max_length
        checked: list[tuple[list[str], bool]] = []
        for i, s in enumerate(_as_list(sentences)):
            if isinstance(s, str):
                checked.append(tokenizer.split_checked(s))
                continue
            if isinstance(s, bytes | bytearray) or not isinstance(s, Sequence | np.ndarray):
                raise InputError(
                    f"input {i} is {type(s).__name__}, expected a str or a list of str tokens"
                    + (" (decode bytes to str first)" if isinstance(s, bytes | bytearray) else "")
                )
            toks = list(s)
            for j, t in enumerate(toks):
                if not isinstance(t, str):
                    raise InputError(f"input {i}: token {j} is {type(t).__name__}, expected a str")
            checked.append((toks[:max_len], len(toks) > max_len))
        return checked

    def tag(
        self,
        sentences: Sequence[str | Sequence[str]],
        batch_size: int | None = None,
        tokenize: str = TOKENIZE_SPACES,
    ) -> list[TagPrediction]:
        """Tags per token. A sentence is a string or a list of tokens.

        `tokenize` says how a string is split: "spaces" (default) with the model's own
        tokenizer, which for tag models splits at whitespace as in their pre-tokenized
        (CoNLL-U) training data; "words" with the built-in word tokenizer (words with inner
        apostrophes, each punctuation character a token), for raw text. Token lists are used
        as they are. Sentences over the model's max length are cut (`truncated=True`).
        """
        checked = self._split(sentences, tokenize)
        probs = self._text_outputs([toks for toks, _ in checked], self._batch(batch_size))
        out = []
        for (toks, cut), p in zip(checked, probs, strict=True):
            if p is None:
                out.append(TagPrediction(tokens=[], tags=[], confidences=[]))
                continue
            best = p[: len(toks)].argmax(-1)
            out.append(
                TagPrediction(
                    tokens=list(toks),
                    tags=[self.labels[i] for i in best],
                    confidences=[float(p[j, i]) for j, i in enumerate(best)],
                    truncated=cut,
                )
            )
        return out

    def predict(
        self, inputs: Any, batch_size: int | None = None, **options: Any
    ) -> list[TagPrediction]:
        """`tag`; takes `tokenize` ("spaces" or "words")."""
        no_options(self, options, allowed=("tokenize",))
        return self.tag(_as_list(inputs), batch_size, options.get("tokenize") or TOKENIZE_SPACES)

    def _records(
        self, texts: Sequence[str], numbers: Sequence[int], opts: RunOptions
    ) -> list[dict[str, Any]]:
        records = []
        tags = self.tag(texts, opts.batch_size, opts.tokenize)
        for number, t in zip(numbers, tags, strict=True):
            rec: dict[str, Any] = {"line": number, "tokens": t.tokens, "tags": t.tags}
            if opts.probabilities:
                rec["confidences"] = [round(c, 6) for c in t.confidences]
            if t.truncated:
                rec["truncated"] = len(t.tokens)
            records.append(rec)
        return records

    def tsv_columns(self, opts: RunOptions) -> list[str]:
        confidences = ["confidences"] if opts.probabilities else []
        return ["line", "tokens", "tags", *confidences, "truncated", "error"]

    def frame_column_names(self, probabilities: bool, as_json: bool) -> list[str]:
        return ["tokens", "tags", *(["confidences"] if probabilities else [])]

    def frame_columns(
        self, records: Sequence[dict[str, Any]], probabilities: bool, as_json: bool
    ) -> dict[str, np.ndarray]:
        return {
            key: json_column(records, key)
            if as_json
            else object_column([r.get(key) for r in records])
            for key in self.frame_column_names(probabilities, as_json)
        }

    def evaluate(
        self, data: Path, batch_size: int, tag_column: str = "upos", top_k: int = DEFAULT_TOP_K
    ) -> dict[str, Any]:
        """Token accuracy, accuracy on out-of-vocabulary tokens, entity F1 for BIO tags."""
        from bilstm.core.datasets import read_tagged
        from bilstm.core.metrics import tagging_metrics

        sentences = read_tagged(data, tag_column)
        self._check_gold_tags(data, [s.tags for s in sentences], tag_column)
        preds = self.tag([s.tokens for s in sentences], batch_size)
        gold = [s.tags[: len(p.tags)] for s, p in zip(sentences, preds, strict=True)]
        norm = self.encoder.tokenizer.normalize
        vocab = self.vocabulary
        known = [[norm(t) in vocab for t in p.tokens] for p in preds]
        metrics = tagging_metrics(gold, [p.tags for p in preds], known)
        return metrics | {"sentences": len(sentences)}

    def _check_gold_tags(self, data: Path, gold: Sequence[Sequence[str]], column: str) -> None:
        """Refuse gold tags the model does not know: scoring them would report accuracy 0 for
        a reason that has nothing to do with the model, most often the wrong column
        (--tag-column xpos on a UPOS model)."""
        from bilstm.core.errors import DataError

        known_tags = set(self.labels)
        unknown: dict[str, int] = {}
        for tags in gold:
            for tag in tags:
                if tag not in known_tags:
                    unknown[tag] = unknown.get(tag, 0) + 1
        if unknown:
            shown = ", ".join(f"{t!r} ({n}x)" for t, n in sorted(unknown.items())[:10])
            raise DataError(
                f"{data}: {sum(unknown.values())} gold tags in --tag-column {column} are not "
                f"among the model's {len(self.labels)} tags ({shown}); the model knows "
                f"{sorted(known_tags)[:20]}. Is it the column the model was trained on?"
            )
