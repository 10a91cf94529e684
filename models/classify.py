"""Text classification: data encoding, loss and metrics for `bilstm train classify`."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bilstm.core import datasets
from bilstm.core.batching import length_batches, pad_batch
from bilstm.core.datasets import LabelledText
from bilstm.core.errors import DataError
from bilstm.core.metrics import classification_metrics
from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
from bilstm.core.vocab import UNK_ID, Vocabulary
from bilstm.models import options, skeleton
from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMClassifier
from bilstm.models.options import TrainOptions
from bilstm.models.skeleton import Prepared
from bilstm.models.training import apply_vectors

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


@dataclass
class ClassifyTrainer:
    """The classify hooks of the training skeleton (`bilstm.models.skeleton.train`)."""

    train_items: Sequence[LabelledText]
    dev_items: Sequence[LabelledText]
    model_cfg: dict[str, Any]
    tokenizer_cfg: TokenizerConfig
    paths: tuple[Path, Path] | None = None
    name: str = "classify"

    def build(self, cfg: TrainConfig, console: Console) -> Checkpoint:
        """Vocabulary and labels from the training texts; the first dev texts as examples."""
        tok = Tokenizer(self.tokenizer_cfg)
        vocab = Vocabulary.build(
            (tok.tokenize(it.text) for it in self.train_items),
            min_freq=cfg.min_freq,
            max_size=cfg.max_vocab,
        )
        labels = sorted({it.label for it in self.train_items})
        model_config = ModelConfig(
            vocab_size=len(vocab), num_labels=len(labels), task=self.name, **self.model_cfg
        )
        model = BiLSTMClassifier(model_config)
        apply_vectors(model.embedding, vocab, cfg, console)
        return Checkpoint(
            model=model,
            model_config=model_config,
            train_config=cfg,
            tokenizer=self.tokenizer_cfg,
            vocabulary=vocab,
            labels=labels,
            examples=[it.text for it in self.dev_items[:NUM_EXAMPLES]],
        )

    def prepare(
        self, base: Checkpoint, cfg: TrainConfig, device: torch.device, resume: bool
    ) -> Prepared:
        """Token ids and label indexes per split, and class weights if asked for."""
        assert base.vocabulary is not None and base.tokenizer is not None
        vocab, labels, tok = base.vocabulary, base.labels, Tokenizer(base.tokenizer)
        splits = {"train": self.train_items, "dev": self.dev_items}
        _check_known_labels(
            labels, {"training": self.train_items, "dev": self.dev_items}, self.paths, resume
        )
        index = {lab: i for i, lab in enumerate(labels)}
        # A text with no tokens cannot go through a packed RNN (length 0). In training it is
        # seen as a single <unk>; at inference such a text gets no label at all.
        ids = {
            name: [vocab.encode(tok.tokenize(it.text)) or [UNK_ID] for it in items]
            for name, items in splits.items()
        }
        gold = {name: [index[it.label] for it in items] for name, items in splits.items()}
        weight = _class_weights(gold["train"], len(labels), device) if cfg.class_weights else None
        return Prepared(
            spec=ClassifySpec(ids, gold, labels, cfg.batch_size, device, weight),
            base=base,
            train_examples=len(self.train_items),
            dev_examples=len(self.dev_items),
            description=(
                f"train {len(self.train_items)} texts, dev {len(self.dev_items)}, vocabulary "
                f"{len(vocab)}, labels {labels}"
            ),
        )

    def finish(
        self, ckpt: Checkpoint, prepared: Prepared, out: Path, console: Console
    ) -> Checkpoint:
        """Print the best epoch's dev accuracy."""
        console.print(
            f"best epoch {ckpt.summary['best_epoch']}: dev accuracy "
            f"{ckpt.summary['dev_metrics'].get('accuracy', 0.0):.4f}; saved {out}"
        )
        return ckpt


def _class_weights(gold: list[int], num_labels: int, device: torch.device) -> torch.Tensor:
    """Inverse class frequency, so that rare classes weigh as much in the loss as common ones."""
    counts = Counter(gold)
    return torch.tensor(
        [len(gold) / (num_labels * max(counts[i], 1)) for i in range(num_labels)],
        dtype=torch.float32,
        device=device,
    )


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
    task = ClassifyTrainer(train_items, dev_items, model_cfg, tokenizer_cfg, paths)
    return skeleton.train(task, out, train_cfg, data_info, console, resume)


def train_from_options(
    opts: TrainOptions, model_cfg: dict[str, Any], train_cfg: TrainConfig, console: Console
) -> Checkpoint:
    """`bilstm train classify`: read the TSV/JSONL files and train."""
    read = datasets.read_classification
    return train_classifier(
        read(opts.data, opts.skip_bad_lines),
        read(opts.dev, opts.skip_bad_lines),
        opts.out,
        model_cfg,
        train_cfg,
        TokenizerConfig(lowercase=opts.lowercase, max_length=opts.max_length),
        options.data_info(opts),
        console=console,
        resume=opts.resume,
        paths=(opts.data, opts.dev),
    )


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
