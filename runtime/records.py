"""Per-task output records of `bilstm-run` (one per input line, or per window)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bilstm.runtime.errors import InputError
from bilstm.runtime.model import TOKENIZE_SPACES, BiLSTM
from bilstm.runtime.reader import Line
from bilstm.runtime.series import window_starts


def tsv_columns(
    model: BiLSTM, probabilities: bool, rolling: bool = False, anomalies: bool = False
) -> list[str]:
    """TSV/table header of a task's records: every field the JSON record can carry."""
    if model.task == "classify":
        probs = [f"p_{lab}" for lab in model.labels] if probabilities else []
        return ["line", "label", *probs, "truncated", "error"]
    if model.task == "tag":
        confidences = ["confidences"] if probabilities else []
        return ["line", "tokens", "tags", *confidences, "truncated", "error"]
    if model.task == "cloze":
        return ["line", "word", "candidates", "error"]
    actual = ["actual"] if rolling else []
    flags = ["zscores", "anomalies"] if anomalies else []
    return ["row", "forecast", *actual, *flags, "error"]


def tsv_cells(record: dict[str, Any], columns: Sequence[str]) -> list[str]:
    """A record flattened to the cells of `columns` (lists joined by spaces)."""
    cells = []
    for col in columns:
        if col.startswith("p_"):
            value = (record.get("probabilities") or {}).get(col[2:])
        else:
            value = record.get(col)
        if value is None:
            cells.append("")
        elif isinstance(value, list):
            cells.append(" ".join(_cell(v) for v in value))
        else:
            cells.append(_cell(value))
    return [c.replace("\t", " ").replace("\n", " ") for c in cells]


def _cell(value: Any) -> str:
    if isinstance(value, bool):  # as JSON writes them, not Python's True/False
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ":".join(_cell(v) for v in value)
    return "" if value is None else str(value)


def text_records(
    model: BiLSTM,
    lines: Sequence[Line],
    batch_size: int,
    top_k: int,
    probabilities: bool,
    tokenize: str = TOKENIZE_SPACES,
) -> list[dict[str, Any]]:
    """Records for a chunk of text lines, in order; bad lines get error records.

    `tokenize` ("spaces" or "words") is how a tag model splits lines (`BiLSTM.tag`). A
    classify or tag record whose text had more tokens than the model's max length gets
    `"truncated": N`, the number of tokens kept (the field is absent otherwise).
    """
    texts = [ln.text or "" for ln in lines]
    records: list[dict[str, Any]] = []
    if model.task == "classify":
        for ln, p in zip(lines, model.classify(texts, batch_size), strict=True):
            rec: dict[str, Any] = {"line": ln.number, "label": p.label}
            if probabilities:
                rec["probabilities"] = (
                    None
                    if p.probabilities is None
                    else {k: round(v, 6) for k, v in p.probabilities.items()}
                )
            if p.truncated:
                rec["truncated"] = p.num_tokens
            records.append(rec)
    elif model.task == "tag":
        for ln, t in zip(lines, model.tag(texts, batch_size, tokenize), strict=True):
            rec = {"line": ln.number, "tokens": t.tokens, "tags": t.tags}
            if probabilities:
                rec["confidences"] = [round(c, 6) for c in t.confidences]
            if t.truncated:
                rec["truncated"] = len(t.tokens)
            records.append(rec)
    else:
        records = _cloze_records(model, lines, texts, batch_size, top_k)
    for i, ln in enumerate(lines):
        if ln.error is not None:
            records[i] = {"line": ln.number, "error": ln.error}
    return records


def _cloze_records(
    model: BiLSTM, lines: Sequence[Line], texts: Sequence[str], batch_size: int, top_k: int
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for ln, p in zip(lines, model.fill(texts, top_k, batch_size), strict=True):
        if p.error is not None:
            records.append({"line": ln.number, "error": p.error})
            continue
        records.append(
            {
                "line": ln.number,
                "word": p.word,
                "candidates": [[w, round(q, 6)] for w, q in p.candidates],
            }
        )
    return records


def forecast_records(
    model: BiLSTM,
    values: np.ndarray,
    rows: Sequence[int],
    rolling: bool,
    anomalies: bool,
    threshold: float,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Forecast records for a series [n, columns]; `rows[i]` is the file line of row i.

    Without `rolling`, one record: the forecast after the last window. With it, one record per
    window, with the actual values where the file has them and, with `anomalies`, z-scores
    and flags from the dev-set residual statistics.
    """
    n = len(values)
    if n < model.window:
        raise InputError(
            f"the series has {n} rows, fewer than the model's window of "
            f"{model.window}; give at least {model.window} rows"
        )
    starts = window_starts(n, model.window, rolling)
    target = values[:, model.columns.index(model.target)]
    mean, std = model.residual_stats() if anomalies else (None, None)
    records: list[dict[str, Any]] = []
    for begin in range(0, len(starts), max(batch_size, 1) * 16):
        part = starts[begin : begin + max(batch_size, 1) * 16]
        windows = np.stack([values[s : s + model.window] for s in part])
        for s, fc in zip(part, model.forecast(windows, batch_size), strict=True):
            end = s + model.window
            rec: dict[str, Any] = {
                "row": rows[end - 1],
                "forecast": [round(v, 6) for v in fc.values],
            }
            if rolling:
                actual = [
                    round(float(target[end + h]), 6) if end + h < n else None
                    for h in range(model.horizon)
                ]
                rec["actual"] = actual
                if anomalies and mean is not None and std is not None:
                    z = [
                        None if a is None else round(float((a - f - mean[h]) / std[h]), 4)
                        for h, (a, f) in enumerate(zip(actual, fc.values, strict=True))
                    ]
                    rec["zscores"] = z
                    rec["anomalies"] = [None if v is None else abs(v) > threshold for v in z]
            records.append(rec)
    return records
