"""The training loop shared by every task: Adam, clipping, LR on plateau, early stopping."""

from __future__ import annotations

import contextlib
import copy
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bilstm.core.batching import length_batches
from bilstm.core.errors import CheckpointError, DataError
from bilstm.core.vocab import Vocabulary
from bilstm.models.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_trainer_state,
    save_checkpoint,
)
from bilstm.models.config import TrainConfig


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


@dataclass
class FitState:
    """Where `fit` stands after an epoch: all that `--resume` needs to continue exactly.

    Saved as trainer_state.pt through `to_dict`: a plain dict of tensors, numbers, lists and
    tuples, so that `torch.load(weights_only=True)` reads it (no pickled classes, no code run
    on load). The keys are those of every earlier bilstm, so older runs stay resumable.
    """

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    best_score: float
    best_epoch: int
    stale: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    order_rng: Any
    """`random.Random.getstate()` of the batch order."""
    data_rng: Any
    """`random.Random.getstate()` of the per-rank draws (masking, word dropout)."""
    torch_rng: torch.Tensor

    def to_dict(self) -> dict[str, Any]:
        """The plain dict written to trainer_state.pt (shallow: tensors are not copied)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FitState:
        """Inverse of `to_dict`; a missing key is a `CheckpointError`, extra keys are ignored."""
        missing = [f.name for f in fields(cls) if f.name not in state]
        if missing:
            raise CheckpointError(f"trainer state lacks {missing}; the run cannot be resumed")
        values = {f.name: state[f.name] for f in fields(cls)}
        # torch.load gives lists where random.Random.getstate() had tuples.
        values["order_rng"] = _tuples(values["order_rng"])
        values["data_rng"] = _tuples(values["data_rng"])
        return cls(**values)


Saver = Callable[[dict[str, torch.Tensor], FitResult, FitState], None]
"""Called after every epoch (rank 0 only) with the best weights so far, the result so far and
the trainer state that `--resume` needs."""


EpochCallback = Callable[[dict[str, Any]], None]
"""Called after every epoch (on every rank) with that epoch's history row: `epoch`,
`train_loss`, `dev_<metric>` numbers, `lr`, `seconds`. It may raise to stop training (a tuner
pruning a hopeless trial); the checkpoint saved for that epoch is kept."""

_EPOCH_CALLBACK: ContextVar[EpochCallback | None] = ContextVar("epoch_callback", default=None)


@contextlib.contextmanager
def epoch_callback(callback: EpochCallback) -> Iterator[None]:
    """Have every `fit` run in this context (thread/task) call `callback` after each epoch.

    This reaches the loop through the task modules and `bilstm train`'s command unchanged
    (how `bilstm tune` watches its trials); `fit(on_epoch=...)` is the direct way.
    """
    token = _EPOCH_CALLBACK.set(callback)
    try:
        yield
    finally:
        _EPOCH_CALLBACK.reset(token)


def distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) unless running under an initialised torch.distributed group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclass
class _Loop:
    """The loop's moving parts between epochs (what `FitState` saves, live)."""

    model: torch.nn.Module
    trained: torch.nn.Module
    """`model`, or its DistributedDataParallel wrapper under torchrun."""
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau
    order_rng: random.Random
    data_rng: random.Random
    best_state: dict[str, torch.Tensor]
    rank: int = 0
    world: int = 1
    best_score: float = -math.inf
    best_epoch: int = 0
    stale: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    first: int = 1
    """The first epoch to run (after a resumed run's last)."""

    def state(self, epoch: int) -> FitState:
        """The trainer state after `epoch`."""
        return FitState(
            epoch=epoch,
            model=self.model.state_dict(),
            optimizer=self.opt.state_dict(),
            scheduler=self.sched.state_dict(),
            best_score=self.best_score,
            best_epoch=self.best_epoch,
            stale=self.stale,
            best_metrics=self.best_metrics,
            history=self.history,
            order_rng=self.order_rng.getstate(),
            data_rng=self.data_rng.getstate(),
            torch_rng=torch.get_rng_state(),
        )

    def restore(self, saved: FitState, console: Console, patience: int) -> None:
        """Continue after `saved`; the model's current weights (the checkpoint's) are the best."""
        self.best_state = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(saved.model)
        self.opt.load_state_dict(saved.optimizer)
        self.sched.load_state_dict(saved.scheduler)
        self.best_score, self.best_epoch, self.stale = (
            saved.best_score,
            saved.best_epoch,
            saved.stale,
        )
        self.best_metrics, self.history = saved.best_metrics, list(saved.history)
        self.order_rng.setstate(saved.order_rng)
        self.data_rng.setstate(saved.data_rng)
        torch.set_rng_state(saved.torch_rng)
        self.first = saved.epoch + 1
        if self.stale >= patience:
            console.print(f"resume: the run had stopped early at epoch {saved.epoch}")


def _start(
    model: torch.nn.Module,
    spec: TaskSpec,
    cfg: TrainConfig,
    console: Console,
    resume: FitState | None,
) -> _Loop:
    """The optimiser, scheduler and random streams of a new run, or of `resume`'s."""
    rank, world = distributed()
    trained: torch.nn.Module = model
    if world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max" if spec.higher_is_better else "min", factor=0.5, patience=cfg.lr_patience
    )
    loop = _Loop(
        model=model,
        trained=trained,
        opt=opt,
        sched=sched,
        # Batch order must be the same on every rank; masking/dropout draws differ per rank.
        order_rng=random.Random(cfg.seed),
        data_rng=random.Random(cfg.seed * 1000 + rank),
        best_state=copy.deepcopy(model.state_dict()),
        rank=rank,
        world=world,
    )
    if resume is not None:
        loop.restore(resume, console, cfg.patience)
    return loop


def fit(
    model: torch.nn.Module,
    spec: TaskSpec,
    cfg: TrainConfig,
    console: Console,
    save: Saver | None = None,
    resume: FitState | None = None,
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train `model` in place; on return it holds the weights of the best dev epoch.

    Under torchrun (an initialised process group) the model is wrapped in
    DistributedDataParallel and each rank takes every world-th length-bucketed batch of the
    same shuffled order; losses are summed across ranks, every rank scores the full dev set
    with the same weights (so all agree on early stopping), and only rank 0 calls `save`.
    `resume` is a trainer state written by an earlier run: training continues after its epoch.
    `on_epoch` (default: the one set by `epoch_callback`) is called after each epoch is saved.
    """
    on_epoch = on_epoch or _EPOCH_CALLBACK.get()
    loop = _start(model, spec, cfg, console, resume)
    lengths = spec.lengths("train")
    started = time.perf_counter()
    for epoch in range(loop.first, cfg.epochs + 1):
        if loop.stale >= cfg.patience:
            break
        t0 = time.perf_counter()
        total, seen = _train_epoch(loop, spec, cfg, console, epoch, lengths)
        _score_epoch(loop, spec, cfg, console, epoch, total / max(seen, 1), t0)
        if save is not None and loop.rank == 0:
            result = FitResult(
                loop.best_epoch,
                loop.best_metrics,
                loop.history,
                round(time.perf_counter() - started, 1),
            )
            save(loop.best_state, result, loop.state(epoch))
        if loop.world > 1:
            torch.distributed.barrier()
        if on_epoch is not None:
            on_epoch(dict(loop.history[-1]))
    model.load_state_dict(loop.best_state)
    model.eval()
    return FitResult(
        best_epoch=loop.best_epoch,
        best_metrics=loop.best_metrics,
        history=loop.history,
        seconds=round(time.perf_counter() - started, 1),
    )


def _train_epoch(
    loop: _Loop,
    spec: TaskSpec,
    cfg: TrainConfig,
    console: Console,
    epoch: int,
    lengths: list[int],
) -> tuple[float, int]:
    """One pass over this rank's batches: (summed loss over all ranks, items seen)."""
    loop.trained.train()
    batches = bucketed_batches(lengths, cfg.batch_size, loop.order_rng)
    if loop.world > 1:
        per_rank = len(batches) // loop.world  # every rank must step equally often
        batches = batches[loop.rank :: loop.world][:per_rank]
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
            total += _step(loop, spec, cfg, epoch, batch) * len(batch)
            seen += len(batch)
            progress.update(
                bar, advance=1, loss=total / seen, rate=seen / max(time.perf_counter() - t0, 1e-9)
            )
    if loop.world > 1:
        sums = torch.tensor([total, float(seen)], dtype=torch.float64)
        torch.distributed.all_reduce(sums)
        total, seen = float(sums[0]), int(sums[1])
    return total, seen


def _step(loop: _Loop, spec: TaskSpec, cfg: TrainConfig, epoch: int, batch: list[int]) -> float:
    """One optimiser step on `batch`; returns its mean loss."""
    loop.opt.zero_grad(set_to_none=True)
    loss = spec.loss(loop.trained, "train", batch, loop.data_rng)
    if not math.isfinite(loss.item()):
        raise DataError(
            f"training diverged at epoch {epoch} (loss {loss.item()}); "
            "lower --lr or set --clip-norm"
        )
    loss.backward()
    if cfg.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(loop.model.parameters(), cfg.clip_norm)
    loop.opt.step()
    return float(loss.item())


def _score_epoch(
    loop: _Loop,
    spec: TaskSpec,
    cfg: TrainConfig,
    console: Console,
    epoch: int,
    train_loss: float,
    t0: float,
) -> None:
    """Dev metrics of the epoch: history, best weights, LR schedule, early stopping."""
    loop.model.eval()
    metrics = spec.evaluate(loop.model, "dev")
    score = (1.0 if spec.higher_is_better else -1.0) * float(metrics[spec.metric])
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        **{f"dev_{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
        "lr": loop.opt.param_groups[0]["lr"],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    loop.history.append(row)
    improved = score > loop.best_score
    if improved:
        loop.best_score, loop.best_epoch, loop.stale = score, epoch, 0
        loop.best_state = copy.deepcopy(loop.model.state_dict())
        loop.best_metrics = metrics
    else:
        loop.stale += 1
    shown = "  ".join(
        f"{k} {v:.4f}"
        for k, v in metrics.items()
        if isinstance(v, float) and not k.startswith("baseline") and "step" not in k
    )
    console.print(
        f"epoch {epoch}: loss {row['train_loss']:.4f}  dev {shown}  "
        f"{row['seconds']:.1f}s{'  *best' if improved else ''}"
    )
    loop.sched.step(float(metrics[spec.metric]))
    if loop.stale >= cfg.patience:
        console.print(f"early stop: no dev improvement for {loop.stale} epochs")


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
    resume: FitState | None = None,
    on_epoch: EpochCallback | None = None,
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

    def save(best: dict[str, torch.Tensor], result: FitResult, state: FitState) -> None:
        save_checkpoint(finished(result), out, weights=best, trainer_state=state.to_dict())

    result = fit(model, spec, train_cfg, console, save=save, resume=resume, on_epoch=on_epoch)
    return finished(result)


def start_or_resume(
    task: str, out: Path, resume: bool, build: Callable[[], Checkpoint]
) -> tuple[Checkpoint, FitState | None]:
    """A fresh checkpoint from `build()`, or (with `resume`) the one at `out` and its trainer
    state. A resumed run keeps the checkpoint's vocabulary, labels, settings and scalers."""
    if not resume:
        return build(), None
    base, state = load_checkpoint(out), load_trainer_state(out)
    if base.task != task:
        raise CheckpointError(f"{out}: is a {base.task} checkpoint, cannot resume it as {task}")
    try:
        return base, FitState.from_dict(state)
    except CheckpointError as exc:
        raise CheckpointError(f"{out}: {exc}") from None


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
