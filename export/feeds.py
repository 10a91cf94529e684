"""Inputs for parity cases that every task's hooks share: ragged batches, text encoding."""

from __future__ import annotations

import numpy as np

from bilstm.core.preprocess import TextEncoder
from bilstm.models.checkpoint import Checkpoint

Feeds = dict[str, np.ndarray]
"""Graph inputs (or outputs) by name."""


def ragged_batch(
    vocab_size: int, batch: int, time: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random ids with lengths that include 1, 2 and the full time length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, time + 1, size=batch)
    lengths[: min(3, batch)] = [1, 2, time][: min(3, batch)]
    ids = (
        rng.integers(2, vocab_size, size=(batch, time))
        if vocab_size > 2
        else np.ones((batch, time), np.int64)
    )
    ids[np.arange(time)[None, :] >= lengths[:, None]] = 0
    return ids.astype(np.int64), lengths.astype(np.int64)


def text_encoder(ckpt: Checkpoint) -> TextEncoder:
    """The runtime preprocessing of a text checkpoint."""
    assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
    return TextEncoder.create(ckpt.tokenizer, ckpt.vocabulary, ckpt.task_config)
