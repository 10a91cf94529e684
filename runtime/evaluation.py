"""`bilstm eval`: task metrics of an exported model on labelled data (no torch needed)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from bilstm.runtime.datasets import read_classification, read_series, read_tagged, read_text_lines
from bilstm.runtime.errors import DataError
from bilstm.runtime.metrics import (
    classification_metrics,
    error_metrics,
    forecast_baselines,
    tagging_metrics,
    topk_accuracy,
)
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.preprocess import MASK
from bilstm.runtime.vocab import UNK_ID

CLOZE_SEED = 13


def evaluate(
    model: BiLSTM, data: Path, batch_size: int = 64, tag_column: str = "upos", top_k: int = 5
) -> dict[str, Any]:
    """Metrics of `model` on `data` in its task's training format."""
    if model.task == "classify":
        return _classify(model, data, batch_size)
    if model.task == "tag":
        return _tag(model, data, batch_size, tag_column)
    if model.task == "forecast":
        return _forecast(model, data, batch_size)
    return _cloze(model, data, batch_size, top_k)


def _classify(model: BiLSTM, data: Path, batch_size: int) -> dict[str, Any]:
    items = read_classification(data)
    unknown = sorted({it.label for it in items} - set(model.labels))
    if unknown:
        raise DataError(f"{data}: labels {unknown} are not among the model's {model.labels}")
    index = {lab: i for i, lab in enumerate(model.labels)}
    probs = model.probabilities([it.text for it in items], batch_size)
    # A text without tokens gets no prediction and counts as wrong.
    kept = [
        (index[it.label], int(p.argmax()))
        for it, p in zip(items, probs, strict=True)
        if p is not None
    ]
    metrics = classification_metrics([g for g, _ in kept], [p for _, p in kept], model.labels)
    metrics["accuracy"] = sum(g == p for g, p in kept) / len(items)
    metrics["count"] = len(items)
    metrics["no_tokens"] = len(items) - len(kept)
    return metrics


def _tag(model: BiLSTM, data: Path, batch_size: int, tag_column: str) -> dict[str, Any]:
    sentences = read_tagged(data, tag_column)
    known_tags = set(model.labels)
    unknown: dict[str, int] = {}
    for sentence in sentences:
        for tag in sentence.tags:
            if tag not in known_tags:
                unknown[tag] = unknown.get(tag, 0) + 1
    if unknown:
        # Scoring them would report accuracy 0 for a reason that has nothing to do with the
        # model: most often the wrong column (--tag-column xpos on a UPOS model).
        shown = ", ".join(f"{t!r} ({n}x)" for t, n in sorted(unknown.items())[:10])
        raise DataError(
            f"{data}: {sum(unknown.values())} gold tags in --tag-column {tag_column} are not "
            f"among the model's {len(model.labels)} tags ({shown}); the model knows "
            f"{sorted(known_tags)[:20]}. Is it the column the model was trained on?"
        )
    preds = model.tag([s.tokens for s in sentences], batch_size)
    gold = [s.tags[: len(p.tags)] for s, p in zip(sentences, preds, strict=True)]
    norm = model._text().tokenizer.normalize
    vocab = model.vocabulary
    known = [[norm(t) in vocab for t in p.tokens] for p in preds]
    return tagging_metrics(gold, [p.tags for p in preds], known) | {"sentences": len(sentences)}


def _forecast(model: BiLSTM, data: Path, batch_size: int) -> dict[str, Any]:
    series = read_series(data, model.columns)
    values = np.stack([np.asarray(series.columns[c], np.float32) for c in model.columns], axis=1)
    ends = np.arange(model.window, len(values) - model.horizon + 1)
    if len(ends) == 0:
        raise DataError(
            f"{data}: {len(values)} rows are fewer than window {model.window} + "
            f"horizon {model.horizon}"
        )
    windows = np.stack([values[e - model.window : e] for e in ends])
    pred = np.asarray([f.values for f in model.forecast(windows, batch_size)])
    target = values[:, model.columns.index(model.target)].astype(np.float64)
    actual = target[ends[:, None] + np.arange(model.horizon)[None, :]]
    metrics: dict[str, Any] = error_metrics(actual, pred) | {"windows": len(ends)}
    season = model.metadata.task_config.get("season")
    for name, base in forecast_baselines(target, ends, model.horizon, season).items():
        metrics |= {f"baseline_{name}_{k}": v for k, v in error_metrics(actual, base).items()}
    return metrics


def _cloze(model: BiLSTM, data: Path, batch_size: int, top_k: int) -> dict[str, Any]:
    """One blank per line at a seeded random known word; top-1/top-k accuracy."""
    rng = random.Random(CLOZE_SEED)
    token_lists, positions, gold = [], [], []
    for text in read_text_lines(data):
        toks = model.tokens([text])[0]
        ids = model._text().word_ids(toks)
        known = [i for i, t in enumerate(ids) if t > UNK_ID and toks[i] != MASK]
        if len(toks) < 2 or not known:
            continue
        pos = rng.choice(known)
        gold.append(ids[pos])
        toks[pos] = MASK
        token_lists.append(toks)
        positions.append(pos)
    probs = model._text_outputs(token_lists, batch_size, positions)
    vocab_index = {w: i for i, w in enumerate(model.metadata.vocabulary)}
    ranked = [
        [vocab_index[w] for w, _ in model.candidates(p, max(top_k, 5)).candidates]
        for p in probs
        if p is not None
    ]
    ks = sorted({1, 5, top_k})
    return topk_accuracy(gold, ranked, ks) | {"questions": len(gold)}
