"""`bilstm-run` records as TSV cells, and the record functions of the task adapters under
their older names (each task's records are made by its model class in `bilstm.runtime.tasks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bilstm.core.reader import Line
from bilstm.runtime.taskspec import RunOptions

if TYPE_CHECKING:
    from bilstm.runtime.tasks import Forecaster, TextModel


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
    model: TextModel,
    lines: Sequence[Line],
    batch_size: int,
    top_k: int,
    probabilities: bool,
    tokenize: str = "spaces",
) -> list[dict[str, Any]]:
    """Records for a chunk of text lines, in order; bad lines get error records.

    `tokenize` ("spaces" or "words") is how a tag model splits lines. A classify or tag
    record whose text had more tokens than the model's max length gets `"truncated": N`,
    the number of tokens kept (the field is absent otherwise).
    """
    opts = RunOptions(batch_size, top_k=top_k, probabilities=probabilities, tokenize=tokenize)
    return model.line_records(lines, opts)


def forecast_records(
    model: Forecaster,
    values: np.ndarray,
    rows: Sequence[int],
    rolling: bool,
    anomalies: bool,
    threshold: float,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Forecast records for a series [n, columns] (`Forecaster.series_records`)."""
    opts = RunOptions(batch_size, rolling=rolling, anomalies=anomalies, threshold=threshold)
    return model.series_records(values, rows, opts)
