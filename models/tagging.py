"""Sequence tagging: one label per token, with character features for unseen words."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from bilstm.core import datasets
from bilstm.core.batching import length_batches
from bilstm.core.datasets import TaggedSentence
from bilstm.core.errors import DataError
from bilstm.core.metrics import tagging_metrics
from bilstm.core.preprocess import TextEncoder, build_char_vocabulary
from bilstm.core.tokenizer import WHITESPACE_PATTERN, Tokenizer, TokenizerConfig
from bilstm.core.vocab import PAD_ID, UNK_ID, Vocabulary
from bilstm.models import options, skeleton
from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMTagger
from bilstm.models.options import TrainOptions
from bilstm.models.skeleton import Prepared
from bilstm.models.training import apply_vectors

NUM_EXAMPLES = 64


class TagSpec:
    """Token-level cross-entropy (padding ignored); dev token accuracy picks the best epoch."""

    metric = "accuracy"
    higher_is_better = True

    def __init__(
        self,
        encoder: TextEncoder,
        data: dict[str, Sequence[TaggedSentence]],
        tags: list[str],
        cfg: TrainConfig,
        device: torch.device,
    ) -> None:
        self.encoder, self.data, self.tags = encoder, data, tags
        self.index = {t: i for i, t in enumerate(tags)}
        self.cfg, self.device = cfg, device
        max_len = encoder.tokenizer.config.max_length
        self.tokens = {k: [s.tokens[:max_len] for s in v] for k, v in data.items()}
        self.gold = {
            k: [[self.index.get(t, -100) for t in s.tags[:max_len]] for s in v]
            for k, v in data.items()
        }
        self.loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)

    def lengths(self, split: str) -> list[int]:
        return [len(t) for t in self.tokens[split]]

    def _feeds(self, split: str, batch: list[int], rng: random.Random | None) -> list[torch.Tensor]:
        arrays = self.encoder.batch([self.tokens[split][i] for i in batch])
        ids = arrays["input_ids"]
        if rng is not None and self.cfg.word_dropout > 0:
            drop = (
                np.random.default_rng(rng.getrandbits(32)).random(ids.shape) < self.cfg.word_dropout
            )
            ids = np.where(drop & (ids != PAD_ID), UNK_ID, ids)
        feeds = [torch.from_numpy(ids).to(self.device), torch.from_numpy(arrays["lengths"])]
        if "char_ids" in arrays:
            feeds.append(torch.from_numpy(arrays["char_ids"]).to(self.device))
        return feeds

    def loss(
        self, model: torch.nn.Module, split: str, batch: list[int], rng: random.Random
    ) -> torch.Tensor:
        logits = model(*self._feeds(split, batch, rng))
        width = logits.shape[1]
        target = torch.full((len(batch), width), -100, dtype=torch.int64)
        for row, i in enumerate(batch):
            gold = self.gold[split][i]
            target[row, : len(gold)] = torch.tensor(gold)
        return self.loss_fn(
            logits.reshape(-1, logits.shape[-1]),  # type: ignore[no-any-return]
            target.reshape(-1).to(self.device),
        )

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, Any]:
        preds: list[list[str]] = [[] for _ in self.tokens[split]]
        with torch.inference_mode():
            for batch in length_batches(self.lengths(split), self.cfg.batch_size):
                best = model(*self._feeds(split, batch, None)).argmax(-1).tolist()
                for row, i in enumerate(batch):
                    preds[i] = [self.tags[j] for j in best[row][: len(self.tokens[split][i])]]
        gold = [s.tags[: len(t)] for s, t in zip(self.data[split], self.tokens[split], strict=True)]
        norm = self.encoder.tokenizer.normalize
        known = [[norm(w) in self.encoder.vocabulary for w in t] for t in self.tokens[split]]
        return tagging_metrics(gold, preds, known)


@dataclass
class TagTrainer:
    """The tag hooks of the training skeleton (`bilstm.models.skeleton.train`)."""

    train_sentences: Sequence[TaggedSentence]
    dev_sentences: Sequence[TaggedSentence]
    model_cfg: dict[str, Any]
    lowercase: bool
    max_length: int
    char_features: bool
    paths: tuple[Path, Path] | None = None
    name: str = "tag"

    def build(self, cfg: TrainConfig, console: Console) -> Checkpoint:
        """Word and character vocabularies and the tag set from the training sentences."""
        tok_cfg = TokenizerConfig(
            lowercase=self.lowercase, pattern=WHITESPACE_PATTERN, max_length=self.max_length
        )
        tok = Tokenizer(tok_cfg)
        train = self.train_sentences
        vocab = Vocabulary.build(
            ([tok.normalize(t) for t in s.tokens] for s in train),
            min_freq=cfg.min_freq,
            max_size=cfg.max_vocab,
        )
        tags = sorted({t for s in train for t in s.tags})
        chars = build_char_vocabulary([s.tokens for s in train]) if self.char_features else None
        model_config = ModelConfig(
            vocab_size=len(vocab),
            num_labels=len(tags),
            task=self.name,
            char_vocab_size=len(chars) if chars else 0,
            **self.model_cfg,
        )
        model = BiLSTMTagger(model_config)
        apply_vectors(model.embedder.embedding, vocab, cfg, console)
        return Checkpoint(
            model=model,
            model_config=model_config,
            train_config=cfg,
            tokenizer=tok_cfg,
            vocabulary=vocab,
            labels=tags,
            task_config={
                "char_vocabulary": chars.tokens if chars else [],
                "max_word_length": model_config.max_word_length,
            },
            examples=[" ".join(s.tokens) for s in self.dev_sentences[:NUM_EXAMPLES]],
        )

    def prepare(
        self, base: Checkpoint, cfg: TrainConfig, device: torch.device, resume: bool
    ) -> Prepared:
        """The text encoder of `base` (words, characters) over both splits."""
        assert base.vocabulary is not None and base.tokenizer is not None
        train, dev = self.train_sentences, self.dev_sentences
        _check_known_tags(base.labels, {"training": train, "dev": dev}, self.paths, resume)
        chars = base.task_config.get("char_vocabulary")
        encoder = TextEncoder.create(base.tokenizer, base.vocabulary, base.task_config)
        return Prepared(
            spec=TagSpec(encoder, {"train": train, "dev": dev}, base.labels, cfg, device),
            base=base,
            train_examples=len(train),
            dev_examples=len(dev),
            description=(
                f"train {len(train)} sentences, dev {len(dev)}, vocabulary "
                f"{len(base.vocabulary)}, {len(chars) if chars else 0} characters, "
                f"{len(base.labels)} tags"
            ),
        )

    def finish(
        self, ckpt: Checkpoint, prepared: Prepared, out: Path, console: Console
    ) -> Checkpoint:
        """Print the best epoch's dev token accuracy."""
        console.print(
            f"best epoch {ckpt.summary['best_epoch']}: dev token accuracy "
            f"{ckpt.summary['dev_metrics'].get('accuracy', 0.0):.4f}; saved {out}"
        )
        return ckpt


def train_tagger(
    train: Sequence[TaggedSentence],
    dev: Sequence[TaggedSentence],
    out: Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    lowercase: bool,
    max_length: int,
    char_features: bool,
    data_info: dict[str, Any],
    console: Console | None = None,
    resume: bool = False,
    paths: tuple[Path, Path] | None = None,
) -> Checkpoint:
    """Train a tagger (best epoch by dev token accuracy), saving `out` after every epoch.

    `paths` (training, dev file) make error messages name the files."""
    task = TagTrainer(train, dev, model_cfg, lowercase, max_length, char_features, paths)
    return skeleton.train(task, out, train_cfg, data_info, console, resume)


def train_from_options(
    opts: TrainOptions, model_cfg: dict[str, Any], train_cfg: TrainConfig, console: Console
) -> Checkpoint:
    """`bilstm train tag`: read the CoNLL-U / token-TAB-tag files and train."""
    read = datasets.read_tagged
    return train_tagger(
        read(opts.data, opts.tag_column, opts.skip_bad_lines),
        read(opts.dev, opts.tag_column, opts.skip_bad_lines),
        opts.out,
        model_cfg,
        train_cfg,
        opts.lowercase,
        opts.max_length,
        opts.char_features,
        options.data_info(opts),
        console=console,
        resume=opts.resume,
        paths=(opts.data, opts.dev),
    )


def _check_known_tags(
    tags: list[str],
    splits: dict[str, Sequence[TaggedSentence]],
    paths: tuple[Path, Path] | None,
    resume: bool,
) -> None:
    """Refuse data with a tag the model has no output for, naming file:line of its first use."""
    known = set(tags)
    where = dict(zip(splits, paths or ("training data", "dev data"), strict=True))
    unseen: dict[str, tuple[str, int]] = {}
    for split, sentences in splits.items():
        for sentence in sentences:
            for tag in sentence.tags:
                if tag not in known and tag not in unseen:
                    unseen[tag] = (split, sentence.line)
    if not unseen:
        return
    tag, (split, line) = next(iter(unseen.items()))
    more = f" (all unknown tags: {sorted(unseen)})" if len(unseen) > 1 else ""
    origin = (
        f"the checkpoint being resumed ({len(tags)} tags)"
        if resume
        else (f"the training data {where['training']}")
    )
    raise DataError(
        f"{where[split]}:{line}: the sentence starting here has tag {tag!r}, which "
        f"{origin} never uses{more}; the model can only predict tags seen in training. Add "
        "training sentences with it, or fix the tag (is --tag-column the right column?)"
    )
