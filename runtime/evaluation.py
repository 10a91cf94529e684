"""`bilstm eval`: task metrics of an exported model on labelled data (no torch needed).

Each task's metrics are computed by its model class (`evaluate` in `bilstm.runtime.tasks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bilstm.runtime.model import DEFAULT_TOP_K, BiLSTM
from bilstm.runtime.tasks.cloze import CLOZE_SEED

__all__ = ["CLOZE_SEED", "evaluate"]


def evaluate(
    model: BiLSTM,
    data: Path,
    batch_size: int = 64,
    tag_column: str = "upos",
    top_k: int = DEFAULT_TOP_K,
) -> dict[str, Any]:
    """Metrics of `model` on `data` in its task's training format."""
    return model.evaluate(Path(data), batch_size, tag_column, top_k)
