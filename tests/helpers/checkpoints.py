"""`random_checkpoint`: the one factory of tiny random-weight checkpoints for the tests.

Two vocabularies:
- by default `vocab_size` words w0, w1, ... after <pad> and <unk> (texts like "w1 w22" are
  in-vocabulary), with `char_vocab_size` characters from "w0123..." for a character CNN;
- with `texts=`, the words and characters of those texts as the checkpoint's own tokenizer
  splits them (what the standalone exporter needs to check its tokenizer on real text).

Weights are drawn uniform in [-scale, scale] after `torch.manual_seed(seed)`, larger than
PyTorch's default init so that export differences would show. Any other keyword is a
`ModelConfig` field. With `save_to=` the checkpoint is also saved there as `bilstm train`
saves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bilstm.models.checkpoint import Checkpoint

LABELS = {"classify": ["neg", "pos", "neutral"], "tag": ["DET", "NOUN", "X"]}
CHARS = "w0123456789abcdefghijklmnopqrstuvxyz"
VOCAB_SIZE = 20
"""The default `vocab_size`: words w0..w17 after <pad> and <unk>."""


def random_checkpoint(
    task: str = "classify",
    *,
    seed: int = 0,
    scale: float = 0.6,
    texts: Sequence[str] | None = None,
    lowercase: bool = True,
    extra_words: Sequence[str] = (),
    labels: Sequence[str] | None = None,
    examples: Sequence[Any] | None = None,
    summary: dict[str, Any] | None = None,
    save_to: Path | None = None,
    **config: Any,
) -> Checkpoint:
    """A tiny `task` checkpoint with random weights (see the module's docstring)."""
    import torch

    from bilstm.core.preprocess import MASK, build_char_vocabulary
    from bilstm.core.tokenizer import (
        DEFAULT_PATTERN,
        WHITESPACE_PATTERN,
        Tokenizer,
        TokenizerConfig,
    )
    from bilstm.core.vocab import PAD, UNK, Vocabulary
    from bilstm.models.checkpoint import Checkpoint, save_checkpoint
    from bilstm.models.config import ModelConfig, TrainConfig
    from bilstm.models.network import build_model

    torch.manual_seed(seed)
    labels = list(LABELS.get(task, []) if labels is None else labels)
    task_config: dict[str, Any] = {}
    tokenizer: TokenizerConfig | None = None
    vocab: Vocabulary | None = None
    chars: list[str] = []
    if task == "forecast":
        config.setdefault("vocab_size", 0)
        config.setdefault("num_features", 1)
    elif texts is not None:
        pattern = WHITESPACE_PATTERN if task == "tag" else DEFAULT_PATTERN
        tok = Tokenizer(TokenizerConfig(lowercase=lowercase, pattern=pattern, max_length=30))
        token_lists = [tok.tokenize(t) for t in texts] + [list(extra_words)]
        words = Vocabulary.build(token_lists, max_size=200).tokens
        vocab = Vocabulary([*words, MASK] if task == "cloze" else words)
        tokenizer = tok.config
        chars = build_char_vocabulary([tok.split(t) for t in texts], min_freq=2).tokens
        config["vocab_size"] = len(vocab)
        if task == "tag":
            config.setdefault("char_vocab_size", len(chars))
    else:
        size = config.setdefault("vocab_size", VOCAB_SIZE)
        vocab = Vocabulary([PAD, UNK, *(f"w{i}" for i in range(size - 2))])
        tokenizer = TokenizerConfig()
        chars = [PAD, UNK, *CHARS[: max(config.get("char_vocab_size", 0) - 2, 0)]]
    if task == "cloze":
        config.setdefault("num_labels", config["vocab_size"])
    config.setdefault("num_labels", len(labels) or 3)
    defaults = {"embedding_dim": 6, "hidden_size": 8, "attention_size": 5}
    cfg = ModelConfig(task=task, **{**defaults, **config})
    if cfg.char_vocab_size:
        task_config = {"char_vocabulary": chars, "max_word_length": cfg.max_word_length}

    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-scale, scale)
    model.eval()
    if task == "forecast":
        task_config = {
            "scaler": {"mean": [5.0] * cfg.num_features, "std": [2.0] * cfg.num_features},
            "target": "y",
            "columns": ["y", "b", "c", "d", "e", "f"][: cfg.num_features],
            "window": 8,
            "horizon": cfg.num_labels,
        }
        model.feature_mean.fill_(5.0)
        model.feature_std.fill_(2.0)
        model.target_mean.fill_(3.0)
        model.target_std.fill_(0.5)
    if examples is None:
        examples = [t for t in texts[:12] if t.strip()] if texts is not None else []
    ckpt = Checkpoint(
        model=model,
        model_config=cfg,
        train_config=TrainConfig(),
        tokenizer=tokenizer,
        vocabulary=vocab,
        labels=labels if task in ("classify", "tag") else [],
        task_config=task_config,
        summary=dict(summary or {}),
        examples=list(examples),
    )
    if save_to is not None:
        save_checkpoint(ckpt, save_to)
    return ckpt
