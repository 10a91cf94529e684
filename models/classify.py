"""Text classification: data encoding, loss and metrics for `bilstm train classify`."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMClassifier
from bilstm.models.training import (
    apply_vectors,
    parameter_count,
    seed_everything,
    start_or_resume,
    train_and_save,
)
from bilstm.runtime.batching import length_batches, pad_batch
from bilstm.runtime.datasets import LabelledText
from bilstm.runtime.errors import DataError
from bilstm.runtime.metrics import classification_metrics
from bilstm.runtime.tokenizer import Tokenizer, TokenizerConfig
from bilstm.runtime.version import __version__
from bilstm.runtime.vocab import UNK_ID, Vocabulary

NUM_EXAMPLES = 64


class ClassifySpec:
    """Cross-entropy over classes; dev accuracy picks the best epoch."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(
        self,
        ids: dict[str, list[list[int]]],
        labels: dict[str, list[int]],
        names: list[str],
        batch_size: int,
        device: torch.device,
        weight: torch.Tensor | None,
    ) -> None:
        self.ids, self.labels, self.names = ids, labels, names
        self.batch_size, self.device = batch_size, device
        self.loss_fn = torch.nn.CrossEntropyLoss(weight=weight)

    def lengths(self, split: str) -> list[int]:
        return [len(s) for s in self.ids[split]]

    def _forward(self, model: torch.nn.Module, split: str, batch: list[int]) -> torch.Tensor:
        ids, lens = pad_batch([self.ids[split][i] for i in batch])
        return model(torch.from_numpy(ids).to(self.device), torch.from_numpy(lens))  # type: ignore[no-any-return]

    def loss(
        self, model: torch.nn.Module, split: str, batch: list[int], rng: random.Random
    ) -> torch.Tensor:
        target = torch.tensor([self.labels[split][i] for i in batch], device=self.device)
        return self.loss_fn(self._forward(model, split, batch), target)  # type: ignore[no-any-return]

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, Any]:
        preds = [0] * len(self.ids[split])
        with torch.inference_mode():
            for batch in length_batches(self.lengths(split), self.batch_size):
                for i, p in zip(
                    batch, self._forward(model, split, batch).argmax(-1).tolist(), strict=True
                ):
                    preds[i] = p
        return classification_metrics(self.labels[split], preds, self.names)


def train_classifier(
    train_items: Sequence[LabelledText],
    dev_items: Sequence[LabelledText],
    out: Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    tokenizer_cfg: TokenizerConfig,
    data_info: dict[str, Any],
    console: Console | None = None,
    resume: bool = False,
    paths: tuple[Path, Path] | None = None,
) -> Checkpoint:
    """Train a classifier, keep the best epoch by dev accuracy, save it to `out` each epoch.

    `paths` (training, dev file) make error messages name the files.

    `model_cfg` holds `ModelConfig` fields except vocab_size/num_labels, which come from data.
    With `resume`, training continues from the checkpoint at `out`.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    seed_everything(train_cfg.seed)
    device = torch.device(train_cfg.device)

    def build() -> Checkpoint:
        tok = Tokenizer(tokenizer_cfg)
        vocab = Vocabulary.build(
            (tok.tokenize(it.text) for it in train_items),
            min_freq=train_cfg.min_freq,
            max_size=train_cfg.max_vocab,
        )
        labels = sorted({it.label for it in train_items})
        cfg = ModelConfig(
            vocab_size=len(vocab), num_labels=len(labels), task="classify", **model_cfg
        )
        model = BiLSTMClassifier(cfg)
        apply_vectors(model.embedding, vocab, train_cfg, console)
        return Checkpoint(
            model=model,
            model_config=cfg,
            train_config=train_cfg,
            tokenizer=tokenizer_cfg,
            vocabulary=vocab,
            labels=labels,
            examples=[it.text for it in dev_items[:NUM_EXAMPLES]],
        )

    base, state = start_or_resume("classify", out, resume, build)
    assert base.vocabulary is not None and base.tokenizer is not None
    vocab, labels, model = base.vocabulary, base.labels, base.model.to(device)
    base = replace(base, train_config=train_cfg)
    tok = Tokenizer(base.tokenizer)
    _check_known_labels(labels, {"training": train_items, "dev": dev_items}, paths, resume)
    index = {lab: i for i, lab in enumerate(labels)}
    # A text with no tokens cannot go through a packed RNN (length 0). In training it is seen
    # as a single <unk>; at inference such a text gets no label at all.
    ids = {
        name: [vocab.encode(tok.tokenize(it.text)) or [UNK_ID] for it in items]
        for name, items in (("train", train_items), ("dev", dev_items))
    }
    gold = {
        name: [index[it.label] for it in items]
        for name, items in (("train", train_items), ("dev", dev_items))
    }
    weight = None
    if train_cfg.class_weights:
        counts = Counter(gold["train"])
        weight = torch.tensor(
            [len(gold["train"]) / (len(labels) * max(counts[i], 1)) for i in range(len(labels))],
            dtype=torch.float32,
            device=device,
        )
    console.print(
        f"train {len(train_items)} texts, dev {len(dev_items)}, vocabulary "
        f"{len(vocab)}, labels {labels}, {parameter_count(model):,} parameters"
    )
    spec = ClassifySpec(ids, gold, labels, train_cfg.batch_size, device, weight)
    summary = {
        "task": "classify",
        "toolkit_version": __version__,
        "data": data_info,
        "train_examples": len(train_items),
        "dev_examples": len(dev_items),
    }
    ckpt = train_and_save(model, spec, train_cfg, console, out, base, summary, state)
    console.print(
        f"best epoch {ckpt.summary['best_epoch']}: dev accuracy "
        f"{ckpt.summary['dev_metrics'].get('accuracy', 0.0):.4f}; saved {out}"
    )
    return ckpt


def _check_known_labels(
    labels: list[str],
    splits: dict[str, Sequence[LabelledText]],
    paths: tuple[Path, Path] | None,
    resume: bool,
) -> None:
    """Refuse data with a label the model has no output for, naming file:line of its first use."""
    known = set(labels)
    where = dict(zip(splits, paths or ("training data", "dev data"), strict=True))
    unseen: dict[str, tuple[str, int]] = {}
    for split, items in splits.items():
        for item in items:
            if item.label not in known and item.label not in unseen:
                unseen[item.label] = (split, item.line)
    if not unseen:
        return
    label, (split, line) = next(iter(unseen.items()))
    more = f" (all unknown labels: {sorted(unseen)})" if len(unseen) > 1 else ""
    origin = "the checkpoint being resumed" if resume else f"the training data {where['training']}"
    raise DataError(
        f"{where[split]}:{line}: label {label!r} is not among the labels of {origin} "
        f"({labels}){more}; the model can only predict labels seen in training. Add training "
        "examples with it, or fix the label"
    )
