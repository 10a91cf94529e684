"""Text classification: a label and class probabilities per text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bilstm.core.vocab import UNK_ID
from bilstm.runtime import metadata as md
from bilstm.runtime.model import DEFAULT_TOP_K, _as_list, _texts, check_output
from bilstm.runtime.predictions import ClassPrediction
from bilstm.runtime.tasks.text import TextModel, json_column, no_options, object_column
from bilstm.runtime.taskspec import TEXT_RUN_OPTIONS, RunOptions, TaskSpec, id_inputs

SPEC = TaskSpec(
    name="classify",
    inputs=id_inputs(),
    outputs=(md.LOGITS, md.PROBABILITIES),
    output_axes=("batch", "classes"),
    text_input=True,
    needs_labels=True,
    per_token=False,
    variants=True,
    run_options=TEXT_RUN_OPTIONS | {"probabilities"},
)


class Classifier(TextModel):
    """A text classifier: `classify(texts)` gives a label and probabilities per text."""

    SPEC = SPEC
    STREAM_OPTIONS = ("probabilities",)

    def probabilities(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> list[np.ndarray | None]:
        """Class probabilities per text (None where it has no tokens), in input order."""
        return self._text_outputs(self.tokens(texts), self._batch(batch_size))

    def classify(
        self, texts: Sequence[str], batch_size: int | None = None
    ) -> list[ClassPrediction]:
        """Label and probabilities per text; a text without tokens gets `label=None`."""
        scores = self._scores(_texts(texts), self._batch(batch_size))
        out = []
        labels = self.labels
        for values, count, cut in zip(scores.values(), scores.counts, scores.cut, strict=True):
            if values is None:
                out.append(ClassPrediction(label=None, probabilities=None, num_tokens=0))
                continue
            out.append(
                ClassPrediction(
                    label=labels[values.index(max(values))],  # first maximum, as argmax
                    probabilities=dict(zip(labels, values, strict=True)),
                    num_tokens=count,
                    truncated=cut,
                )
            )
        return out

    def _scores(self, texts: Sequence[str], batch_size: int) -> _Scores:
        """Probabilities of every text (one matrix), token counts and truncation flags.

        Without a standalone graph or character features a classifier needs no case-kept
        tokens: the texts are split straight into vocabulary keys and their ids, all texts
        in one regex pass where the tokenizer allows (`TextEncoder.pack_texts`), else text
        by text (`Tokenizer.keys_checked`).
        """
        token_lists: list[list[str]] = []
        packed = None
        if not self.metadata.standalone and self.encoder.chars is None:
            if len(texts) == 1:  # one request (predict, serve): no chunk machinery
                return self._one_scores(texts[0])
            packing = self.encoder.pack_texts(texts)
            if packing is None:
                checked = [self.encoder.tokenizer.keys_checked(t) for t in texts]
                packed = self.encoder.pack([k for k, _ in checked], keys=True)
                cut = [c for _, c in checked]
            else:
                packed, cut = packing
            counts: list[int] = packed.lengths.tolist()
        else:
            split = self.encoder.tokenizer.split_checked
            checked = [split(t) for t in texts]
            token_lists = [toks for toks, _ in checked]
            counts = [len(t) for t in token_lists]
            cut = [c for _, c in checked]
        probs: np.ndarray | None = None
        scored = np.zeros(len(texts), dtype=bool)
        for rows, result in self._scored_batches(token_lists, batch_size, packed=packed):
            if probs is None:
                probs = np.zeros((len(texts), result.shape[1]), dtype=result.dtype)
            probs[rows] = result
            scored[rows] = True
        if probs is None:
            probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        return _Scores(probs, scored, counts, cut)

    def predict(
        self, inputs: Any, batch_size: int | None = None, **options: Any
    ) -> list[ClassPrediction]:
        """`classify`; takes no options (a tag or cloze option is an error, not ignored)."""
        no_options(self, options)
        return self.classify(_as_list(inputs), batch_size)

    def _records(
        self, texts: Sequence[str], numbers: Sequence[int], opts: RunOptions
    ) -> list[dict[str, Any]]:
        scores = self._scores(texts, opts.batch_size)
        labels = self.labels
        picked = scores.labels(labels)
        records: list[dict[str, Any]]
        if opts.probabilities:
            probs = [
                None if label is None else dict(zip(labels, row, strict=True))
                for label, row in zip(picked, scores.rounded(), strict=True)
            ]
            records = [
                {"line": n, "label": label, "probabilities": p}
                for n, label, p in zip(numbers, picked, probs, strict=True)
            ]
        else:
            records = [
                {"line": n, "label": label} for n, label in zip(numbers, picked, strict=True)
            ]
        for i, cut in enumerate(scores.cut):
            if cut:  # only a text with tokens is cut
                records[i]["truncated"] = scores.counts[i]
        return records

    def tsv_columns(self, opts: RunOptions) -> list[str]:
        probs = [f"p_{lab}" for lab in self.labels] if opts.probabilities else []
        return ["line", "label", *probs, "truncated", "error"]

    def frame_column_names(self, probabilities: bool, as_json: bool) -> list[str]:
        probs = ["probabilities"] if as_json else [f"p_{lab}" for lab in self.labels]
        return ["label", *(probs if probabilities else [])]

    def frame_columns(
        self, records: Sequence[dict[str, Any]], probabilities: bool, as_json: bool
    ) -> dict[str, np.ndarray]:
        cols = {"label": object_column([r.get("label") for r in records])}
        if probabilities and as_json:
            cols["probabilities"] = json_column(records, "probabilities")
        elif probabilities:
            for lab in self.labels:
                cols[f"p_{lab}"] = np.array(
                    [(r.get("probabilities") or {}).get(lab, np.nan) for r in records],
                    dtype=np.float64,
                )
        return cols

    def evaluate(
        self, data: Path, batch_size: int, tag_column: str = "upos", top_k: int = DEFAULT_TOP_K
    ) -> dict[str, Any]:
        """Accuracy, macro-F1, per-class precision/recall and the confusion matrix."""
        from bilstm.core.datasets import read_classification
        from bilstm.core.errors import DataError
        from bilstm.core.metrics import classification_metrics

        items = read_classification(data)
        unknown = sorted({it.label for it in items} - set(self.labels))
        if unknown:
            raise DataError(f"{data}: labels {unknown} are not among the model's {self.labels}")
        index = {lab: i for i, lab in enumerate(self.labels)}
        probs = self.probabilities([it.text for it in items], batch_size)
        # A text without tokens gets no prediction and counts as wrong.
        kept = [
            (index[it.label], int(p.argmax()))
            for it, p in zip(items, probs, strict=True)
            if p is not None
        ]
        metrics = classification_metrics([g for g, _ in kept], [p for _, p in kept], self.labels)
        metrics["accuracy"] = sum(g == p for g, p in kept) / len(items)
        metrics["count"] = len(items)
        metrics["no_tokens"] = len(items) - len(kept)
        return metrics

    def _one_scores(self, text: str) -> _Scores:
        """`_scores` of one text: its ids straight into a 1-row batch (the latency path)."""
        keys, cut = self.encoder.tokenizer.keys_checked(text)
        if not keys:
            empty = np.zeros((1, len(self.labels)), dtype=np.float32)
            return _Scores(empty, np.zeros(1, dtype=bool), [0], [False])
        get = self.encoder.vocabulary.index.get
        ids = np.array([[get(k, UNK_ID) for k in keys]], dtype=np.int64)
        feeds = {md.INPUT_IDS: ids, md.LENGTHS: np.array([len(keys)], dtype=np.int64)}
        result = self.run(feeds, [md.PROBABILITIES])[md.PROBABILITIES]
        check_output(self, md.PROBABILITIES, result, 1, self._width(), len(keys))
        return _Scores(result, np.array([True]), [len(keys)], [cut])


class _Scores:
    """A classifier's outputs for many texts: one probability matrix (rows of texts without
    tokens unused), which rows were scored, token counts, truncation flags."""

    def __init__(
        self, probs: np.ndarray, scored: np.ndarray, counts: list[int], cut: list[bool]
    ) -> None:
        self.probs = probs
        self.scored = scored
        self.counts = counts
        self.cut = cut

    def values(self) -> list[list[float] | None]:
        """Each text's probabilities as Python floats (None where it had no tokens): one
        `tolist()` for the whole matrix instead of a `float()` per value."""
        rows: list[list[float] | None] = self.probs.tolist()
        if not self.scored.all():
            for i in np.flatnonzero(~self.scored).tolist():
                rows[i] = None
        return rows

    def labels(self, names: Sequence[str]) -> list[str | None]:
        """Each text's label (the first most probable, as argmax), None without tokens."""
        if np.isfinite(self.probs).all():  # argmax is then `values.index(max(values))`
            picked: list[str | None] = [names[k] for k in self.probs.argmax(axis=1).tolist()]
            for i in np.flatnonzero(~self.scored).tolist():
                picked[i] = None
            return picked
        return [
            None if values is None else names[values.index(max(values))] for values in self.values()
        ]

    def rounded(self) -> list[list[float]]:
        """Every probability rounded to 6 decimals, exactly as Python's `round(v, 6)`.

        For float32 values numpy does it for the whole matrix with the same result: x * 1e6
        is exact in float64 (24 + 20 bits), `rint` rounds that exact value half to even as
        `round` does the decimal, and dividing by 1e6 gives the float nearest that decimal,
        which is what `round` returns. Other dtypes take `round` per value.
        """
        if self.probs.dtype == np.float32:
            rows: list[list[float]] = np.round(self.probs.astype(np.float64), 6).tolist()
            return rows
        return [[round(v, 6) for v in row] for row in self.probs.tolist()]
