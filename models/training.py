"""Training loop for classification: Adam, cross-entropy, clipping, early stopping."""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bilstm.models.checkpoint import Checkpoint, save_checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMClassifier
from bilstm.runtime.batching import length_batches, pad_batch
from bilstm.runtime.datasets import LabelledText
from bilstm.runtime.errors import DataError
from bilstm.runtime.metrics import classification_metrics
from bilstm.runtime.tokenizer import Tokenizer, TokenizerConfig
from bilstm.runtime.version import __version__
from bilstm.runtime.vocab import Vocabulary

log = logging.getLogger(__name__)
NUM_EXAMPLES = 64


@dataclass
class Encoded:
    """Token ids and label ids of a data split."""

    ids: list[list[int]]
    labels: list[int]


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


def _encode(
    items: Sequence[LabelledText], tok: Tokenizer, vocab: Vocabulary, label_ids: dict[str, int]
) -> Encoded:
    ids = [vocab.encode(tok.tokenize(it.text)) for it in items]
    # A text with no tokens would have length 0, which packed RNNs cannot take; they are
    # scored as a single <unk> in training only (inference returns no label for them).
    ids = [seq or [vocab.id_of("<unk>")] for seq in ids]
    return Encoded(ids=ids, labels=[label_ids[it.label] for it in items])


def evaluate(
    model: BiLSTMClassifier,
    data: Encoded,
    labels: Sequence[str],
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Classification metrics of `model` on encoded data."""
    model.eval()
    preds = [0] * len(data.ids)
    with torch.inference_mode():
        for batch in length_batches([len(s) for s in data.ids], batch_size):
            ids, lens = pad_batch([data.ids[i] for i in batch])
            logits = model(torch.from_numpy(ids).to(device), torch.from_numpy(lens))
            for i, p in zip(batch, logits.argmax(-1).tolist(), strict=True):
                preds[i] = p
    return classification_metrics(data.labels, preds, labels)


def train_classifier(
    train_items: Sequence[LabelledText],
    dev_items: Sequence[LabelledText],
    out: Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    tokenizer_cfg: TokenizerConfig,
    data_info: dict[str, Any],
    console: Console | None = None,
) -> Checkpoint:
    """Train a classifier, keep the best epoch by dev accuracy, save it to `out`.

    `model_cfg` holds `ModelConfig` fields except vocab_size/num_labels, which come from data.
    """
    console = console or Console(stderr=True)
    seed_everything(train_cfg.seed)
    device = torch.device(train_cfg.device)
    tok = Tokenizer(tokenizer_cfg)
    vocab = Vocabulary.build(
        (tok.tokenize(it.text) for it in train_items),
        min_freq=train_cfg.min_freq,
        max_size=train_cfg.max_vocab,
    )
    labels = sorted({it.label for it in train_items})
    unseen = sorted({it.label for it in dev_items} - set(labels))
    if unseen:
        raise DataError(f"dev data has labels {unseen} that never occur in the training data")
    label_ids = {lab: i for i, lab in enumerate(labels)}
    train = _encode(train_items, tok, vocab, label_ids)
    dev = _encode(dev_items, tok, vocab, label_ids)

    cfg = ModelConfig(vocab_size=len(vocab), num_labels=len(labels), **model_cfg)
    model = BiLSTMClassifier(cfg).to(device)
    weight = None
    if train_cfg.class_weights:
        counts = Counter(train.labels)
        weight = torch.tensor(
            [len(train.labels) / (len(labels) * counts[i]) for i in range(len(labels))],
            dtype=torch.float32,
            device=device,
        )
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.5, patience=train_cfg.lr_patience
    )
    console.print(
        f"train {len(train.ids)} texts, dev {len(dev.ids)}, vocabulary {len(vocab)}, "
        f"labels {labels}, {sum(p.numel() for p in model.parameters()):,} parameters"
    )

    rng = random.Random(train_cfg.seed)
    lengths = [len(s) for s in train.ids]
    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_acc, best_epoch, stale = -1.0, 0, 0
    started = time.perf_counter()
    for epoch in range(1, train_cfg.epochs + 1):
        model.train()
        batches = bucketed_batches(lengths, train_cfg.batch_size, rng)
        total_loss, seen, t0 = 0.0, 0, time.perf_counter()
        with Progress(
            TextColumn(f"epoch {epoch}/{train_cfg.epochs}"),
            BarColumn(),
            TextColumn(
                "{task.completed}/{task.total} loss {task.fields[loss]:.4f} "
                "{task.fields[rate]:,.0f} texts/s"
            ),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ) as progress:
            bar = progress.add_task("train", total=len(batches), loss=0.0, rate=0.0)
            for batch in batches:
                ids, lens = pad_batch([train.ids[i] for i in batch])
                target = torch.tensor([train.labels[i] for i in batch], device=device)
                opt.zero_grad(set_to_none=True)
                logits = model(torch.from_numpy(ids).to(device), torch.from_numpy(lens))
                loss = loss_fn(logits, target)
                if not math.isfinite(loss.item()):
                    raise DataError(
                        f"training diverged at epoch {epoch} (loss {loss.item()}); "
                        "lower --lr or set --clip-norm"
                    )
                loss.backward()
                if train_cfg.clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.clip_norm)
                opt.step()
                total_loss += loss.item() * len(batch)
                seen += len(batch)
                progress.update(
                    bar,
                    advance=1,
                    loss=total_loss / seen,
                    rate=seen / max(time.perf_counter() - t0, 1e-9),
                )
        metrics = evaluate(model, dev, labels, train_cfg.batch_size, device)
        row = {
            "epoch": epoch,
            "train_loss": total_loss / max(seen, 1),
            "dev_accuracy": metrics["accuracy"],
            "dev_macro_f1": metrics["macro_f1"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        improved = metrics["accuracy"] > best_acc
        if improved:
            best_acc, best_epoch, stale = metrics["accuracy"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_metrics = metrics
        else:
            stale += 1
        console.print(
            f"epoch {epoch}: loss {row['train_loss']:.4f}  dev acc "
            f"{metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
            f"{row['seconds']:.1f}s{'  *best' if improved else ''}"
        )
        sched.step(metrics["accuracy"])
        if stale >= train_cfg.patience:
            console.print(f"early stop: no dev improvement for {stale} epochs")
            break

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    summary = {
        "task": "classify",
        "toolkit_version": __version__,
        "data": data_info,
        "train_examples": len(train.ids),
        "dev_examples": len(dev.ids),
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_seconds": round(time.perf_counter() - started, 1),
        "dev_metrics": best_metrics,
    }
    ckpt = Checkpoint(
        model=model.cpu(),
        model_config=cfg,
        train_config=train_cfg,
        tokenizer=tokenizer_cfg,
        vocabulary=vocab,
        labels=labels,
        history=history,
        summary=summary,
        examples=[it.text for it in dev_items[:NUM_EXAMPLES]],
    )
    save_checkpoint(ckpt, out)
    console.print(f"best epoch {best_epoch}: dev accuracy {best_acc:.4f}; saved {out}")
    log.debug("summary %s", json.dumps(summary))
    return ckpt
