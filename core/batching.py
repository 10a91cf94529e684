"""Padding and length-bucketed batching shared by training and inference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bilstm.core.vocab import PAD_ID


def pad_batch(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences into `input_ids[batch, time]` and `lengths[batch]` (int64)."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    width = int(lengths.max()) if len(seqs) else 0
    ids = np.full((len(seqs), width), PAD_ID, dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
    return ids, lengths


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to minimise padding.

    The sort is stable, so equal lengths keep their input order and results are deterministic.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_order(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`length_batches` on an int array: the same batches, as index arrays."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class PackedIds:
    """The token ids of many sequences end to end (`flat`), with each one's start and
    length: a batch of any of them is padded with one gather, not a copy per row."""

    def __init__(
        self, flat: np.ndarray, lengths: np.ndarray, starts: np.ndarray | None = None
    ) -> None:
        self.flat = flat
        self.lengths = lengths
        if starts is None:  # end to end, in order
            starts = np.zeros(len(lengths), dtype=np.int64)
            np.cumsum(lengths[:-1], out=starts[1:])
        self.starts = starts

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`pad_batch` of the sequences `rows` (in that order): `input_ids`, `lengths`."""
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 0
        cols = np.arange(width, dtype=np.int64)
        inside = cols < lengths[:, None]
        ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
        # Row-major order of the mask is each row's positions in turn: what `flat` holds.
        ids[inside] = self.flat[(self.starts[rows][:, None] + cols)[inside]]
        return ids, lengths
