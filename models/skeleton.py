"""One training skeleton for every task: seed, build or resume, prepare, fit, save, report.

A task plugs in through a `TaskTrainer` (classify.ClassifyTrainer, tagging.TagTrainer,
forecasting.ForecastTrainer, cloze.ClozeTrainer), which holds the run's data and answers the
task-specific questions: how to build a fresh checkpoint (vocabulary or scalers, model config,
examples for the exporter), how to encode the data for the loop (batches, loss and dev
metrics: a `TaskSpec`), and what to add and print once the loop is done.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console

from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import TrainConfig
from bilstm.models.training import (
    EpochCallback,
    TaskSpec,
    parameter_count,
    seed_everything,
    start_or_resume,
    train_and_save,
)
from bilstm.runtime.version import __version__


@dataclass
class Prepared:
    """The data of a run, encoded for the training loop."""

    spec: TaskSpec
    """Batches, loss and dev metrics."""
    base: Checkpoint
    """The checkpoint to train (fresh or resumed), everything but the weights final."""
    train_examples: int
    dev_examples: int
    description: str
    """One line on the data, printed before training (the parameter count is appended)."""


class TaskTrainer(Protocol):
    """The per-task hooks of `train`."""

    name: str
    """The task (a key of `bilstm.models.tasks.TASKS`)."""

    def build(self, cfg: TrainConfig, console: Console) -> Checkpoint:
        """A fresh checkpoint: vocabulary or scalers, model config, initial model, examples."""
        ...

    def prepare(
        self, base: Checkpoint, cfg: TrainConfig, device: torch.device, resume: bool
    ) -> Prepared:
        """Check the data against `base` (labels) and encode it for the loop."""
        ...

    def finish(
        self, ckpt: Checkpoint, prepared: Prepared, out: Path, console: Console
    ) -> Checkpoint:
        """After training (best weights loaded, `out` saved): summary extras and the report."""
        ...


def train(
    task: TaskTrainer,
    out: Path,
    train_cfg: TrainConfig,
    data_info: dict[str, Any],
    console: Console | None = None,
    resume: bool = False,
    on_epoch: EpochCallback | None = None,
) -> Checkpoint:
    """Train `task`, keeping the best epoch by its dev metric and saving `out` every epoch.

    With `resume`, the checkpoint at `out` (vocabulary, labels, settings, scalers) and its
    trainer state are continued instead of building a fresh one. `on_epoch` is called with
    each epoch's history row (see `training.EpochCallback`).
    """
    console = console or Console(stderr=True, soft_wrap=True)
    # Seeded before `build`, which draws the initial weights.
    seed_everything(train_cfg.seed)
    device = torch.device(train_cfg.device)
    base, state = start_or_resume(task.name, out, resume, lambda: task.build(train_cfg, console))
    prepared = task.prepare(replace(base, train_config=train_cfg), train_cfg, device, resume)
    model = prepared.base.model.to(device)
    console.print(f"{prepared.description}, {parameter_count(model):,} parameters")
    summary = {
        "task": task.name,
        "toolkit_version": __version__,
        "data": data_info,
        "train_examples": prepared.train_examples,
        "dev_examples": prepared.dev_examples,
    }
    ckpt = train_and_save(
        model, prepared.spec, train_cfg, console, out, prepared.base, summary, state, on_epoch
    )
    return task.finish(ckpt, prepared, out, console)
