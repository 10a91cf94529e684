"""`TrainOptions`: the options of `bilstm train`, typed, after --config and --resume filled them."""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any

from bilstm.models.config import TrainConfig
from bilstm.models.tasks import TASKS, TaskInfo

PATH_OPTIONS = ("data", "dev", "out", "config", "init_from")


@dataclass
class TrainOptions:
    """One `bilstm train` run, option by option (names as on the command line)."""

    task: str
    data: Path
    dev: Path
    out: Path
    config: Path | None
    embedding_dim: int
    hidden_size: int
    layers: int
    cell: str
    merge: str
    pooling: str
    proj_size: int
    dropout: float
    embedding_dropout: float
    max_length: int
    lowercase: bool
    min_freq: int
    max_vocab: int | None
    class_weights: bool
    tag_column: str
    char_features: bool
    word_dropout: float
    target: str | None
    features: str | None
    window: int
    horizon: int
    season: int | None
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    clip_norm: float
    patience: int
    seed: int
    device: str
    threads: int | None
    skip_bad_lines: bool
    resume: bool
    force: bool
    vectors: str | None
    """As given: the checkpoint's train config stores it verbatim."""
    debug: bool
    # classify: distillation and warm start (defaults, so code that builds options by
    # keyword without them keeps working).
    teacher: tuple[Path, ...] = ()
    """Checkpoint folders of trained classifiers (--teacher, repeatable) whose softened
    outputs, averaged, the student learns; empty without distillation."""
    distill_temperature: float = 2.0
    distill_weight: float = 0.5
    distill_augment: int = 0
    """Synthetic copies per training text for the teachers to label (--distill-augment);
    0: none."""
    augment_mask: float = 0.1
    augment_swap: float = 0.1
    augment_ngram: float = 0.25
    init_from: Path | None = None
    """Cloze checkpoint folder whose embedding and recurrent layers start a new run."""

    def __post_init__(self) -> None:
        # click hands over paths as str (typer converts only the callback's own arguments).
        for name in PATH_OPTIONS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        self.teacher = tuple(Path(t) for t in self.teacher or ())

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainOptions:
        """From click's parameter dict; choices become their plain string values."""
        plain = {k: v.value if isinstance(v, Enum) else v for k, v in params.items()}
        return cls(**{f.name: plain[f.name] for f in fields(cls)})

    @property
    def info(self) -> TaskInfo:
        """The task's registry entry."""
        return TASKS[self.task]

    def model_settings(self) -> dict[str, Any]:
        """`ModelConfig` fields set by options (the data sets vocabulary and output sizes)."""
        settings: dict[str, Any] = {
            "hidden_size": self.hidden_size,
            "num_layers": self.layers,
            "cell": self.cell,
            "merge": self.merge,
            "proj_size": self.proj_size,
            "dropout": self.dropout,
        }
        if self.info.text:
            settings |= {
                "embedding_dim": self.embedding_dim,
                "embedding_dropout": self.embedding_dropout,
            }
        for name in self.info.model_options:
            settings[name] = getattr(self, name)
        return settings

    def train_config(self) -> TrainConfig:
        """The optimisation settings stored with the checkpoint."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            clip_norm=self.clip_norm,
            patience=self.patience,
            seed=self.seed,
            min_freq=self.min_freq,
            max_vocab=self.max_vocab,
            class_weights=self.class_weights,
            word_dropout=self.word_dropout,
            vectors=str(self.vectors) if self.vectors else None,
            device=self.device,
        )


def data_info(opts: TrainOptions) -> dict[str, Any]:
    """The summary's record of the data files and the command line that trained on them.

    A teacher or an --init-from checkpoint is part of what the model learnt from, so it is
    recorded too (and reaches `bilstm info` through the exported metadata).
    """
    info: dict[str, Any] = {
        "train": Path(opts.data).name,
        "dev": Path(opts.dev).name,
        "argv": sys.argv[1:],
    }
    if opts.teacher:
        # one teacher: "checkpoint" as before ensembles; several: "checkpoints", in order
        names = [Path(t).name for t in opts.teacher]
        info["teacher"] = {
            **({"checkpoint": names[0]} if len(names) == 1 else {"checkpoints": names}),
            "temperature": opts.distill_temperature,
            "weight": opts.distill_weight,
        }
        if opts.distill_augment:  # recorded only when used: without it the record is as before
            info["teacher"]["augment"] = {
                "copies": opts.distill_augment,
                "mask": opts.augment_mask,
                "swap": opts.augment_swap,
                "ngram": opts.augment_ngram,
                "seed": opts.seed,
            }
    if opts.init_from is not None:
        info["init_from"] = Path(opts.init_from).name
    return info
