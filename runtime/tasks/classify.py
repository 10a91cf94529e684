"""Text classification: a label and class probabilities per text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bilstm.runtime import metadata as md
from bilstm.runtime.model import DEFAULT_TOP_K, _as_list, _texts
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
        split = self.encoder.tokenizer.split_checked
        checked = [split(t) for t in _texts(texts)]
        probs = self._text_outputs([toks for toks, _ in checked], self._batch(batch_size))
        out = []
        for p, (toks, cut) in zip(probs, checked, strict=True):
            if p is None:
                out.append(ClassPrediction(label=None, probabilities=None, num_tokens=0))
                continue
            values = p.tolist()  # one C call instead of a float() per class
            out.append(
                ClassPrediction(
                    label=self.labels[values.index(max(values))],  # first maximum, as argmax
                    probabilities=dict(zip(self.labels, values, strict=True)),
                    num_tokens=len(toks),
                    truncated=cut,
                )
            )
        return out

    def predict(
        self, inputs: Any, batch_size: int | None = None, **options: Any
    ) -> list[ClassPrediction]:
        """`classify`; takes no options (a tag or cloze option is an error, not ignored)."""
        no_options(self, options)
        return self.classify(_as_list(inputs), batch_size)

    def _records(
        self, texts: Sequence[str], numbers: Sequence[int], opts: RunOptions
    ) -> list[dict[str, Any]]:
        records = []
        for number, p in zip(numbers, self.classify(texts, opts.batch_size), strict=True):
            rec: dict[str, Any] = {"line": number, "label": p.label}
            if opts.probabilities:
                rec["probabilities"] = (
                    None
                    if p.probabilities is None
                    else {k: round(v, 6) for k, v in p.probabilities.items()}
                )
            if p.truncated:
                rec["truncated"] = p.num_tokens
            records.append(rec)
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
