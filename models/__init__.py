"""bilstm.models: PyTorch modules, data encoding, training loop and checkpoints.

The names below are imported on first use (PEP 562), not with the package: importing
`bilstm.models.cli` (for `bilstm train --help`) must not pay for torch, which most of them
need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bilstm.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from bilstm.models.config import ModelConfig, TrainConfig
    from bilstm.models.network import BiLSTMClassifier

_WHERE = {
    "BiLSTMClassifier": "bilstm.models.network",
    "Checkpoint": "bilstm.models.checkpoint",
    "ModelConfig": "bilstm.models.config",
    "TrainConfig": "bilstm.models.config",
    "load_checkpoint": "bilstm.models.checkpoint",
    "save_checkpoint": "bilstm.models.checkpoint",
}

__all__ = [
    "BiLSTMClassifier",
    "Checkpoint",
    "ModelConfig",
    "TrainConfig",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    """Import `name` from its module on first access."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
