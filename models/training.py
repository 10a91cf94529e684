"""The training loop shared by every task: Adam, clipping, LR on plateau, early stopping."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bilstm.models.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
)
from bilstm.models.config import TrainConfig
from bilstm.runtime.batching import length_batches
from bilstm.runtime.errors import CheckpointError, DataError
from bilstm.runtime.vocab import Vocabulary


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffled batches of similar-length items: shuffle, sort within pools, shuffle batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        part = order[start : start + pool]
        for batch in length_batches([lengths[i] for i in part], batch_size):
            batches.append([part[b] for b in batch])
    rng.shuffle(batches)
    return batches


class TaskSpec(Protocol):
    """What the loop needs to know about a task."""

    metric: str
    """Dev metric that selects the best epoch."""
    higher_is_better: bool

    def lengths(self, split: str) -> list[int]:
        """Sequence length of every item of a split ("train" or "dev")."""
        ...

    def loss(
        self, model: torch.nn.Module, split: str, batch: list[int], rng: random.Random
    ) -> torch.Tensor:
        """Mean training loss of the items `batch` of `split`."""
        ...

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, Any]:
        """Task metrics of `model` (in eval mode) on a split; includes `metric`."""
        ...


@dataclass
class FitResult:
    """What training produced: the best epoch's metrics and the per-epoch history."""

    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


Saver = Callable[[dict[str, torch.Tensor], FitResult, dict[str, Any]], None]
"""Called after every epoch (rank 0 only) with the best weights so far, the result so far and
the trainer state that `--resume` needs."""


def distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless running under an initialised torch.distributed group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def fit(
    model: torch.nn.Module,
    spec: TaskSpec,
    cfg: TrainConfig,
    console: Console,
    save: Saver | None = None,
    resume: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` in place; on return it holds the weights of the best dev epoch.

    Under torchrun (an initialised process group) the model is wrapped in
    DistributedDataParallel and each rank takes every world-th length-bucketed batch of the
    same shuffled order; losses are summed across ranks, every rank scores the full dev set
    with the same weights (so all agree on early stopping), and only rank 0 calls `save`.
    `resume` is a trainer state written by an earlier run: training continues after its epoch.
    """
    rank, world = distributed()
    trained: torch.nn.Module = model
    if world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max" if spec.higher_is_better else "min", factor=0.5, patience=cfg.lr_patience
    )
    # Batch order must be the same on every rank; masking/dropout draws differ per rank.
    order_rng = random.Random(cfg.seed)
    data_rng = random.Random(cfg.seed * 1000 + rank)
    lengths = spec.lengths("train")
    sign = 1.0 if spec.higher_is_better else -1.0
    best_score, best_epoch, stale, first = -math.inf, 0, 0, 1
    best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())
    best_metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    if resume is not None:
        best_state = copy.deepcopy(model.state_dict())  # the checkpoint holds the best weights
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        best_score, best_epoch, stale = resume["best_score"], resume["best_epoch"], resume["stale"]
        best_metrics, history = resume["best_metrics"], list(resume["history"])
        order_rng.setstate(_tuples(resume["order_rng"]))
        data_rng.setstate(_tuples(resume["data_rng"]))
        torch.set_rng_state(resume["torch_rng"])
        first = resume["epoch"] + 1
        if stale >= cfg.patience:
            console.print(f"resume: the run had stopped early at epoch {resume['epoch']}")
    started = time.perf_counter()
    for epoch in range(first, cfg.epochs + 1):
        if stale >= cfg.patience:
            break
        trained.train()
        batches = bucketed_batches(lengths, cfg.batch_size, order_rng)
        if world > 1:
            per_rank = len(batches) // world  # every rank must step equally often
            batches = batches[rank::world][:per_rank]
        total, seen, t0 = 0.0, 0, time.perf_counter()
        with Progress(
            TextColumn(f"epoch {epoch}/{cfg.epochs}"),
            BarColumn(),
            TextColumn(
                "{task.completed}/{task.total} loss {task.fields[loss]:.4f} "
                "{task.fields[rate]:,.0f} items/s"
            ),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress:
            bar = progress.add_task("train", total=len(batches), loss=0.0, rate=0.0)
            for batch in batches:
                opt.zero_grad(set_to_none=True)
                loss = spec.loss(trained, "train", batch, data_rng)
                if not math.isfinite(loss.item()):
                    raise DataError(
                        f"training diverged at epoch {epoch} (loss {loss.item()}); "
                        "lower --lr or set --clip-norm"
                    )
                loss.backward()
                if cfg.clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
                opt.step()
                total += loss.item() * len(batch)
                seen += len(batch)
                progress.update(
                    bar,
                    advance=1,
                    loss=total / seen,
                    rate=seen / max(time.perf_counter() - t0, 1e-9),
                )
        if world > 1:
            sums = torch.tensor([total, float(seen)], dtype=torch.float64)
            torch.distributed.all_reduce(sums)
            total, seen = float(sums[0]), int(sums[1])
        model.eval()
        metrics = spec.evaluate(model, "dev")
        score = sign * float(metrics[spec.metric])
        row = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            **{f"dev_{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        history.append(row)
        improved = score > best_score
        if improved:
            best_score, best_epoch, stale = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_metrics = metrics
        else:
            stale += 1
        shown = "  ".join(
            f"{k} {v:.4f}"
            for k, v in metrics.items()
            if isinstance(v, float) and not k.startswith("baseline") and "step" not in k
        )
        console.print(
            f"epoch {epoch}: loss {row['train_loss']:.4f}  dev {shown}  "
            f"{row['seconds']:.1f}s{'  *best' if improved else ''}"
        )
        sched.step(float(metrics[spec.metric]))
        if stale >= cfg.patience:
            console.print(f"early stop: no dev improvement for {stale} epochs")
        if save is not None and rank == 0:
            state = {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "best_score": best_score,
                "best_epoch": best_epoch,
                "stale": stale,
                "best_metrics": best_metrics,
                "history": history,
                "order_rng": order_rng.getstate(),
                "data_rng": data_rng.getstate(),
                "torch_rng": torch.get_rng_state(),
            }
            result = FitResult(
                best_epoch, best_metrics, history, round(time.perf_counter() - started, 1)
            )
            save(best_state, result, state)
        if world > 1:
            torch.distributed.barrier()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        history=history,
        seconds=round(time.perf_counter() - started, 1),
    )


def _tuples(value: Any) -> Any:
    """random.Random states come back from torch.load with lists where tuples were."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def train_and_save(
    model: torch.nn.Module,
    spec: TaskSpec,
    train_cfg: TrainConfig,
    console: Console,
    out: Path,
    base: Checkpoint,
    summary: dict[str, Any],
    resume: dict[str, Any] | None = None,
) -> Checkpoint:
    """Run `fit`, saving `out` after every epoch (best weights + trainer state).

    `base` carries everything but the weights and history (config, vocabulary, labels, task
    settings, examples); `summary` the data description that goes with the metrics.
    """

    def finished(result: FitResult) -> Checkpoint:
        return replace(
            base,
            model=model,
            history=result.history,
            summary=summary
            | {
                "best_epoch": result.best_epoch,
                "epochs_run": len(result.history),
                "train_seconds": result.seconds,
                "dev_metrics": result.best_metrics,
            },
        )

    def save(best: dict[str, torch.Tensor], result: FitResult, state: dict[str, Any]) -> None:
        save_checkpoint(finished(result), out, weights=best, trainer_state=state)

    result = fit(model, spec, train_cfg, console, save=save, resume=resume)
    return finished(result)


def start_or_resume(
    task: str, out: Path, resume: bool, build: Callable[[], Checkpoint]
) -> tuple[Checkpoint, dict[str, Any] | None]:
    """A fresh checkpoint from `build()`, or (with `resume`) the one at `out` and its trainer
    state. A resumed run keeps the checkpoint's vocabulary, labels, settings and scalers."""
    if not resume:
        return build(), None
    base, state = load_checkpoint(out), load_trainer_state(out)
    if base.task != task:
        raise CheckpointError(f"{out}: is a {base.task} checkpoint, cannot resume it as {task}")
    return base, state


def apply_vectors(
    embedding: torch.nn.Embedding, vocab: Vocabulary | None, cfg: TrainConfig, console: Console
) -> None:
    """Initialise `embedding` from `cfg.vectors` when given."""
    if cfg.vectors and vocab is not None:
        from bilstm.models.vectors import load_vectors

        load_vectors(embedding, vocab, Path(cfg.vectors), console)


def parameter_count(model: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
