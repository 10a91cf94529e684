"""Fill-in-the-blank: predict a masked word from both sides' context."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from bilstm.core import datasets
from bilstm.core.batching import length_batches, pad_batch
from bilstm.core.errors import DataError
from bilstm.core.metrics import topk_accuracy
from bilstm.core.preprocess import BLANK, MASK
from bilstm.core.tokenizer import Tokenizer, TokenizerConfig
from bilstm.core.vocab import PAD, UNK, Vocabulary
from bilstm.models import options, skeleton
from bilstm.models.checkpoint import Checkpoint
from bilstm.models.config import ModelConfig, TrainConfig
from bilstm.models.network import BiLSTMCloze
from bilstm.models.options import TrainOptions
from bilstm.models.skeleton import Prepared
from bilstm.models.training import apply_vectors

NUM_EXAMPLES = 64
SPECIAL = 3  # <pad>, <unk>, <mask> are never predicted


def choose_blank(ids: Sequence[int], rng: random.Random) -> int | None:
    """A random position holding a known word (never <unk>), or None."""
    known = [i for i, t in enumerate(ids) if t >= SPECIAL]
    return rng.choice(known) if known else None


class ClozeSpec:
    """Cross-entropy over the vocabulary at one masked position per sentence."""

    metric = "top1"
    higher_is_better = True

    def __init__(
        self,
        ids: dict[str, list[list[int]]],
        mask_id: int,
        cfg: TrainConfig,
        device: torch.device,
        seed: int,
    ) -> None:
        self.ids, self.mask_id, self.cfg, self.device = ids, mask_id, cfg, device
        # Dev blanks are drawn once, so that every epoch is scored on the same questions.
        rng = random.Random(seed)
        self.dev_blanks = [choose_blank(s, rng) for s in ids["dev"]]
        self.dev_items = [i for i, b in enumerate(self.dev_blanks) if b is not None]

    def lengths(self, split: str) -> list[int]:
        return [len(s) for s in self.ids[split]]

    def _forward(
        self, model: torch.nn.Module, seqs: list[list[int]], positions: list[int]
    ) -> torch.Tensor:
        masked = [[*s[:p], self.mask_id, *s[p + 1 :]] for s, p in zip(seqs, positions, strict=True)]
        ids, lens = pad_batch(masked)
        logits = model(
            torch.from_numpy(ids).to(self.device),
            torch.from_numpy(lens),
            torch.tensor(positions, dtype=torch.int64, device=self.device),
        )
        logits[:, :SPECIAL] = float("-inf")
        return logits  # type: ignore[no-any-return]

    def loss(
        self, model: torch.nn.Module, split: str, batch: list[int], rng: random.Random
    ) -> torch.Tensor:
        seqs, positions, targets = [], [], []
        for i in batch:
            pos = choose_blank(self.ids[split][i], rng)
            if pos is not None:
                seqs.append(self.ids[split][i])
                positions.append(pos)
                targets.append(self.ids[split][i][pos])
        if not seqs:
            return torch.zeros((), requires_grad=True)
        logits = self._forward(model, seqs, positions)
        return torch.nn.functional.cross_entropy(logits, torch.tensor(targets, device=self.device))

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, Any]:
        items = self.dev_items
        gold, ranked = [], []
        lengths = [len(self.ids[split][i]) for i in items]
        with torch.inference_mode():
            for batch in length_batches(lengths, self.cfg.batch_size):
                rows = [items[b] for b in batch]
                positions = [self.dev_blanks[r] or 0 for r in rows]
                logits = self._forward(model, [self.ids[split][r] for r in rows], positions)
                top = logits.topk(5, dim=-1).indices.tolist()
                for r, p, t in zip(rows, positions, top, strict=True):
                    gold.append(self.ids[split][r][p])
                    ranked.append(t)
        return {**topk_accuracy(gold, ranked), "questions": len(gold)}


@dataclass
class ClozeTrainer:
    """The cloze hooks of the training skeleton (`bilstm.models.skeleton.train`)."""

    train_texts: Sequence[str]
    dev_texts: Sequence[str]
    model_cfg: dict[str, Any]
    tokenizer_cfg: TokenizerConfig
    name: str = "cloze"

    def build(self, cfg: TrainConfig, console: Console) -> Checkpoint:
        """The vocabulary (with <mask>, one slot of --max-vocab) from the training lines."""
        tok = Tokenizer(self.tokenizer_cfg)
        cap = None if cfg.max_vocab is None else cfg.max_vocab - 1
        base = Vocabulary.build(
            (tok.tokenize(t) for t in self.train_texts), min_freq=cfg.min_freq, max_size=cap
        )
        vocab = Vocabulary(
            [PAD, UNK, MASK, *[t for t in base.tokens[2:] if t not in (MASK, BLANK)]]
        )
        model_config = ModelConfig(
            vocab_size=len(vocab), num_labels=len(vocab), task=self.name, **self.model_cfg
        )
        model = BiLSTMCloze(model_config)
        apply_vectors(model.embedder.embedding, vocab, cfg, console)
        return Checkpoint(
            model=model,
            model_config=model_config,
            train_config=cfg,
            tokenizer=self.tokenizer_cfg,
            vocabulary=vocab,
            labels=[],
            task_config={"mask_token": MASK, "blank": BLANK},
            examples=_examples(self.dev_texts, tok, vocab, cfg.seed),
        )

    def prepare(
        self, base: Checkpoint, cfg: TrainConfig, device: torch.device, resume: bool
    ) -> Prepared:
        """Token ids of the lines that have a word to blank and context beside it."""
        assert base.vocabulary is not None and base.tokenizer is not None
        vocab, tok = base.vocabulary, Tokenizer(base.tokenizer)
        ids = {
            name: [s for s in (vocab.encode(tok.tokenize(t)) for t in texts) if len(s) >= 2]
            for name, texts in (("train", self.train_texts), ("dev", self.dev_texts))
        }
        if not ids["train"] or not ids["dev"]:
            raise DataError("cloze needs lines of at least 2 tokens in both training and dev data")
        return Prepared(
            spec=ClozeSpec(ids, vocab.id_of(MASK), cfg, device, cfg.seed),
            base=base,
            train_examples=len(ids["train"]),
            dev_examples=len(ids["dev"]),
            description=(
                f"train {len(ids['train'])} sentences, dev {len(ids['dev'])}, vocabulary "
                f"{len(vocab)}"
            ),
        )

    def finish(
        self, ckpt: Checkpoint, prepared: Prepared, out: Path, console: Console
    ) -> Checkpoint:
        """Print the best epoch's dev top-1 and top-5 accuracy."""
        m = ckpt.summary["dev_metrics"]
        console.print(
            f"best epoch {ckpt.summary['best_epoch']}: dev top-1 {m.get('top1', 0):.4f} "
            f"top-5 {m.get('top5', 0):.4f}; saved {out}"
        )
        return ckpt


def train_cloze(
    train_texts: Sequence[str],
    dev_texts: Sequence[str],
    out: Path,
    model_cfg: dict[str, Any],
    train_cfg: TrainConfig,
    tokenizer_cfg: TokenizerConfig,
    data_info: dict[str, Any],
    console: Console | None = None,
    resume: bool = False,
) -> Checkpoint:
    """Train a fill-in-the-blank model (best epoch by dev top-1), saving `out` every epoch."""
    task = ClozeTrainer(train_texts, dev_texts, model_cfg, tokenizer_cfg)
    return skeleton.train(task, out, train_cfg, data_info, console, resume)


def train_from_options(
    opts: TrainOptions, model_cfg: dict[str, Any], train_cfg: TrainConfig, console: Console
) -> Checkpoint:
    """`bilstm train cloze`: read the text files (one sentence a line) and train."""
    read = datasets.read_text_lines
    return train_cloze(
        read(opts.data, opts.skip_bad_lines),
        read(opts.dev, opts.skip_bad_lines),
        opts.out,
        model_cfg,
        train_cfg,
        TokenizerConfig(lowercase=opts.lowercase, max_length=opts.max_length),
        options.data_info(opts),
        console=console,
        resume=opts.resume,
    )


def _examples(texts: Sequence[str], tok: Tokenizer, vocab: Vocabulary, seed: int) -> list[str]:
    """Dev texts with one known word replaced by the blank, for the exporter's parity check."""
    rng = random.Random(seed)
    examples = []
    for text in texts[: NUM_EXAMPLES * 2]:
        toks = tok.split(text)
        keys = vocab.encode(tok.normalize(t) for t in toks)
        pos = choose_blank(keys, rng) if len(toks) >= 2 else None
        if pos is not None:
            examples.append(" ".join([*toks[:pos], BLANK, *toks[pos + 1 :]]))
    return examples[:NUM_EXAMPLES]
