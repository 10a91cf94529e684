"""Task metrics in numpy, shared by training, `bilstm eval` and the exporter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(
    gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

    `confusion[i][j]` counts items of gold class i predicted as class j. A class that is never
    predicted (or never gold) gets precision (recall) 0, as scikit-learn does with
    `zero_division=0`.
    """
    g = np.asarray(gold, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (g, p), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(n), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n), where=denom > 0)
    total = int(confusion.sum())
    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()) if n else 0.0,
        "count": total,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(actual[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": confusion.tolist(),
    }


def is_bio(tags: Sequence[str]) -> bool:
    """True for BIO/IOB2-style tag sets (O plus B-/I- prefixed tags)."""
    names = set(tags)
    return (
        bool(names)
        and any(t.startswith("B-") for t in names)
        and all(t == "O" or t[:2] in ("B-", "I-") for t in names)
    )


def bio_spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """Entity spans (start, end exclusive, type) of a BIO tag sequence; a stray I- starts one."""
    spans: set[tuple[int, int, str]] = set()
    start, kind = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        inside = tag.startswith("I-") and tag[2:] == kind and start >= 0
        if not inside:
            if start >= 0:
                spans.add((start, i, kind))
            start, kind = (i, tag[2:]) if tag[:2] in ("B-", "I-") else (-1, "")
    return spans


def tagging_metrics(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    known: Sequence[Sequence[bool]] | None = None,
) -> dict[str, Any]:
    """Token accuracy (also on out-of-vocabulary tokens when `known` is given) and, for BIO
    tag sets, entity precision/recall/F1 over exact spans."""
    total = correct = oov = oov_correct = 0
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        for j, (a, b) in enumerate(zip(g, p, strict=True)):
            total += 1
            correct += a == b
            if known is not None and not known[i][j]:
                oov += 1
                oov_correct += a == b
    out: dict[str, Any] = {"accuracy": correct / total if total else 0.0, "tokens": total}
    if known is not None:
        out["oov_accuracy"] = oov_correct / oov if oov else 0.0
        out["oov_tokens"] = oov
    if is_bio([t for g in gold for t in g]):
        tp = fp = fn = 0
        for g, p in zip(gold, pred, strict=True):
            gs, ps = bio_spans(g), bio_spans(p)
            tp += len(gs & ps)
            fp += len(ps - gs)
            fn += len(gs - ps)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out["entity_precision"] = prec
        out["entity_recall"] = rec
        out["entity_f1"] = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return out


def error_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE and RMSE over all steps, and per first/last horizon step ([n, horizon] arrays)."""
    err = np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)
    return {
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "mae_step1": float(np.abs(err[:, 0]).mean()),
        "rmse_step1": float(np.sqrt((err[:, 0] ** 2).mean())),
        "mae_last_step": float(np.abs(err[:, -1]).mean()),
        "rmse_last_step": float(np.sqrt((err[:, -1] ** 2).mean())),
    }


def forecast_baselines(
    target: np.ndarray, ends: Sequence[int] | np.ndarray, horizon: int, season: int | None
) -> dict[str, np.ndarray]:
    """Naive forecasts for windows ending before row `end`: persistence (last value) and
    seasonal-naive (the value one season before each forecast step)."""
    target = np.asarray(target, np.float64)
    ends_arr = np.asarray(ends)
    out = {"persistence": np.repeat(target[ends_arr - 1][:, None], horizon, axis=1)}
    if season:
        steps = np.arange(horizon)
        back = season * (steps // season + 1)
        idx = ends_arr[:, None] + steps[None, :] - back[None, :]
        out["seasonal_naive"] = target[np.clip(idx, 0, None)]
    return out


def topk_accuracy(
    gold: Sequence[int], ranked: Sequence[Sequence[int]], ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Share of items whose gold id is among the first k ranked ids, for each k."""
    n = len(gold)
    return {
        f"top{k}": (sum(g in r[:k] for g, r in zip(gold, ranked, strict=True)) / n if n else 0.0)
        for k in ks
    }
