"""bilstm.models: PyTorch modules, data encoding, training loop and checkpoints."""

from bilstm.models.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMClassifier

__all__ = [
    "BiLSTMClassifier",
    "Checkpoint",
    "ModelConfig",
    "TrainConfig",
    "load_checkpoint",
    "save_checkpoint",
]
