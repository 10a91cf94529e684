"""Model and training settings: plain dataclasses stored as JSON in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from bilstm.core.errors import CheckpointError
from bilstm.models.tasks import TASKS as REGISTRY

TASKS = tuple(REGISTRY)
CELLS = ("lstm", "gru")
MERGES = ("concat", "sum", "mul", "ave")
POOLINGS = ("last", "mean", "max", "attention")


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CheckpointError(f"{where}: unknown keys {unknown}; was it written by a newer bilstm?")
    return cls(**data)


@dataclass
class ModelConfig:
    """Architecture of a BiLSTM model."""

    vocab_size: int
    """Rows of the embedding table (ids 0 = padding, 1 = unknown); 0 for forecast."""
    num_labels: int
    """Output width: classes (classify), tags (tag), horizon (forecast), vocabulary (cloze)."""
    task: str = "classify"
    """What the head predicts: classify | tag | forecast | cloze."""
    num_features: int = 0
    """Input features per time step (forecast)."""
    char_vocab_size: int = 0
    """Characters known to the character CNN (tag); 0 disables character features."""
    char_dim: int = 32
    """Character embedding size."""
    char_filters: int = 64
    """Character CNN filters (= character feature size per word)."""
    char_kernel: int = 3
    """Character CNN window (odd)."""
    max_word_length: int = 20
    """Characters per word seen by the CNN; words are padded/truncated to exactly this."""
    embedding_dim: int = 128
    """Size of the word embeddings."""
    hidden_size: int = 128
    """Hidden units per direction in each recurrent layer."""
    num_layers: int = 1
    """Stacked bidirectional layers."""
    cell: str = "lstm"
    """Recurrent cell: lstm or gru."""
    proj_size: int = 0
    """LSTM with projections: each direction's output is projected to this size (0: none)."""
    merge: str = "concat"
    """How the two directions are combined after each layer (Keras merge modes)."""
    pooling: str = "max"
    """Sequence -> vector for classification: last | mean | max | attention."""
    attention_size: int = 64
    """Hidden size of the attention scorer (pooling=attention)."""
    dropout: float = 0.3
    """Dropout between recurrent layers and before the output layer."""
    embedding_dropout: float = 0.1
    """Spatial dropout on embeddings: whole embedding channels dropped for a sequence."""

    def validate(self) -> None:
        """Raise `CheckpointError` if a setting is out of range."""
        info = REGISTRY.get(self.task)
        text = info is None or info.text  # an unknown task fails the first check anyway
        checks = [
            (self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}"),
            (self.cell in CELLS, f"cell must be one of {CELLS}, got {self.cell!r}"),
            (self.merge in MERGES, f"merge must be one of {MERGES}, got {self.merge!r}"),
            (self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}"),
            (
                not text or self.vocab_size >= 2,
                f"vocab_size must be >= 2, got {self.vocab_size}",
            ),
            (
                text or self.num_features >= 1,
                f"num_features must be >= 1 for forecast, got {self.num_features}",
            ),
            (self.char_kernel % 2 == 1, f"char_kernel must be odd, got {self.char_kernel}"),
            (
                self.proj_size == 0
                or (self.cell == "lstm" and 0 < self.proj_size < self.hidden_size),
                f"proj_size must be below hidden_size ({self.hidden_size}) and needs cell lstm",
            ),
            (self.num_labels >= 1, f"num_labels must be >= 1, got {self.num_labels}"),
            (self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}"),
            (self.hidden_size >= 1 and self.embedding_dim >= 1, "sizes must be >= 1"),
            (
                0 <= self.dropout < 1 and 0 <= self.embedding_dropout < 1,
                "dropouts must be in [0, 1)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise CheckpointError(message)

    @property
    def input_size(self) -> int:
        """Width of the first recurrent layer's input."""
        info = REGISTRY.get(self.task)
        if info is not None and not info.text:
            return self.num_features
        return self.embedding_dim + (self.char_filters if self.char_vocab_size else 0)

    @property
    def direction_size(self) -> int:
        """Width of one direction's output: the projection size if any, else hidden_size."""
        return self.proj_size or self.hidden_size

    @property
    def output_size(self) -> int:
        """Width of each layer's merged output."""
        return 2 * self.direction_size if self.merge == "concat" else self.direction_size

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`, refusing unknown keys."""
        cfg: ModelConfig = _from_dict(cls, data, "config.json 'model'")
        cfg.validate()
        return cfg


@dataclass
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    """Gradient clipping: max global L2 norm (0 disables)."""
    patience: int = 3
    """Stop after this many epochs without a better dev metric; the best epoch is restored."""
    lr_patience: int = 1
    """Halve the learning rate after this many epochs without improvement."""
    seed: int = 13
    min_freq: int = 1
    """Tokens seen fewer times in training data map to <unk>."""
    max_vocab: int | None = None
    """Cap on vocabulary size (including <pad>, <unk>)."""
    class_weights: bool = False
    """Weight the loss by inverse class frequency (imbalanced data)."""
    vectors: str | None = None
    """Pretrained word vectors (word2vec/GloVe text) to initialise the embedding with."""
    word_dropout: float = 0.0
    """Replace training tokens by <unk> with this probability (teaches the <unk> path, tag)."""
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`, refusing unknown keys."""
        cfg: TrainConfig = _from_dict(cls, data, "config.json 'train'")
        return cfg
