"""The training loop shared by every task: Adam, clipping, LR on plateau, early stopping."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bilstm.models.config import TrainConfig
from bilstm.runtime.batching import length_batches
from bilstm.runtime.errors import DataError


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


def fit(model: torch.nn.Module, spec: TaskSpec, cfg: TrainConfig, console: Console) -> FitResult:
    """Train `model` in place; on return it holds the weights of the best dev epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max" if spec.higher_is_better else "min", factor=0.5, patience=cfg.lr_patience
    )
    rng = random.Random(cfg.seed)
    lengths = spec.lengths("train")
    sign = 1.0 if spec.higher_is_better else -1.0
    best_score, best_epoch, stale = -math.inf, 0, 0
    best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())
    best_metrics: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        batches = bucketed_batches(lengths, cfg.batch_size, rng)
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
                loss = spec.loss(model, "train", batch, rng)
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
            break
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(
        best_epoch=best_epoch,
        best_metrics=best_metrics,
        history=history,
        seconds=round(time.perf_counter() - started, 1),
    )


def parameter_count(model: torch.nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
