"""What "the same input gives the same output" means for each model precision, and a probe.

fp32 (CPU provider): a row's result depends only on that row. ONNX Runtime's fp32 LSTM and
MLAS GEMMs split work by rows and columns, never along the summed dimension, so batch
neighbours, batch size, chunk size and thread count leave every bit unchanged (measured and
tested on the shipped models, benchmarks/RESULTS.md "int8 determinism").

int8 (ONNX Runtime dynamic quantisation): activations are quantised with ONE scale and zero
point per tensor, computed from that tensor's minimum and maximum at run time:

- `DynamicQuantizeLSTM` quantises the input projection over all rows x time steps of the batch,
  and at every time step the hidden states of a block of rows; for batches of 2+ rows (hidden
  <= 256; 5+ rows otherwise) it splits the batch into `ceil(batch / threads)`-row blocks, one
  scale per block, so `--threads` moves the block edges;
- `DynamicQuantizeLinear` before `MatMulInteger` / `ConvInteger` (output layer; character CNN of
  pos-en) quantises the whole batch tensor at once.

A row with larger-magnitude neighbours gets a coarser scale, so its probabilities move.
Padding does not (padded positions are zeros, always inside the range). With one row per batch
every scale comes from that row alone, and the integer products are exact whatever the thread
split, so batch size 1 is bit-identical alone, inside any file and at any thread count.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bilstm.runtime.model import BiLSTM

# Largest |probability change| measured between batchings/thread counts of the shipped int8
# models (rounded up): 11,261 rt_sentiment reviews, 2,001 and 1,765 UD EWT dev sentences
# (cloze-en: its previous, 4-epoch build). sentiment-fast: 0.008 on examples/reviews.txt
# only; the bound tested is sentiment-int8's.
INT8_MEASURED_DRIFT = {
    "sentiment-int8": 0.04,
    "sentiment-fast": 0.04,
    "pos-en": 0.12,
    "cloze-en": 0.02,
}

_NOTES = {
    "fp32": (
        "bit-identical for the same input whatever the other lines of the file, batch size, "
        "chunk size and --threads (CPU provider, same machine and ONNX Runtime version)"
    ),
    "int8": (
        "bit-identical for the same input at --batch-size 1 (alone or inside any file, any "
        "--threads), and for the same batch composition and --threads twice; with batches of "
        "several lines activations are quantised per batch (and per thread's block of rows), so "
        "probabilities move with the other lines of the batch and with --threads (measured: up "
        "to 0.04 sentiment-int8, 0.12 pos-en token confidences, 0.02 cloze-en's previous build; "
        "0.008 sentiment-fast on 25 example reviews) and near-tie "
        "labels can flip"
    ),
}
_UNMEASURED = (
    "bit-identical for the same input with the same batch composition, batch size, --threads, "
    "machine and provider; not measured across those"
)


def determinism(precision: str) -> str:
    """What is and is not bit-identical for a model of this `export.precision`."""
    return _NOTES.get(precision, _UNMEASURED)


def row_independent_batch_size(precision: str) -> int | None:
    """The largest batch size at which a row's output does not depend on its neighbours or the
    thread count: 1 for int8, None (any) for fp32 and others."""
    return 1 if precision == "int8" else None


@dataclass(frozen=True)
class Drift:
    """How two scorings of the same inputs differ."""

    records: int
    """Inputs compared (those with tokens)."""
    differing: int
    """Inputs whose probability rows are not bit-identical."""
    max_abs: float
    """Largest |probability difference| (tag: over real tokens only)."""
    flips: int
    """Argmax changes: labels (classify), token tags (tag), top-1 words (cloze)."""


def compare(
    a: Sequence[np.ndarray | None],
    b: Sequence[np.ndarray | None],
    sizes: Sequence[int] | None = None,
) -> Drift:
    """Compare two lists of probability rows; `sizes` cuts tag rows to their real tokens."""
    records = differing = flips = 0
    max_abs = 0.0
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x is None or y is None:
            if (x is None) != (y is None):
                raise ValueError(f"input {i} has output in one scoring only")
            continue
        if sizes is not None:
            x, y = x[: sizes[i]], y[: sizes[i]]
        records += 1
        differing += int(not np.array_equal(x, y))
        max_abs = max(max_abs, float(np.abs(x.astype(np.float64) - y).max(initial=0.0)))
        flips += int(np.count_nonzero(x.argmax(-1) != y.argmax(-1)))
    return Drift(records, differing, max_abs, flips)


def probability_rows(
    model: BiLSTM, lines: Sequence[str], batch_size: int
) -> tuple[list[np.ndarray | None], list[int]]:
    """Probability rows per line as `bilstm-run` scores them, and the token count per line."""
    from bilstm.runtime.tasks import TextModel

    if not isinstance(model, TextModel):
        raise ValueError(f"a {model.task} model has no probability rows to compare")
    return model.probability_rows(lines, batch_size)


def measure(name: str, lines: Sequence[str], batch_size: int = 64) -> dict[str, Drift]:
    """Score `lines` alone (batch 1), in batches, in one big batch, with 1 and 2 threads."""
    from bilstm.runtime.model import BiLSTM

    one = BiLSTM.load(name, device="cpu", threads=1)
    two = BiLSTM.load(name, device="cpu", threads=2)
    runs = {
        (m, bs): probability_rows(model, lines, bs)
        for m, model in ((1, one), (2, two))
        for bs in (1, batch_size)
    }
    sizes = runs[1, 1][1] if one.SPEC.per_token else None
    big = probability_rows(one, lines, max(len(lines), 1))[0]

    def drift(x: tuple[int, int], y: tuple[int, int]) -> Drift:
        return compare(runs[x][0], runs[y][0], sizes)

    return {
        "same settings twice (threads 1)": compare(
            runs[1, batch_size][0], probability_rows(one, lines, batch_size)[0], sizes
        ),
        f"alone (batch 1) vs batch {batch_size}, threads 1": drift((1, 1), (1, batch_size)),
        f"alone (batch 1) vs batch {batch_size}, threads 2": drift((2, 1), (2, batch_size)),
        f"batch {batch_size} vs one batch of all, threads 1": compare(
            runs[1, batch_size][0], big, sizes
        ),
        f"threads 1 vs 2, batch {batch_size}": drift((1, batch_size), (2, batch_size)),
        "threads 1 vs 2, batch 1": drift((1, 1), (2, 1)),
    }


def main(argv: Sequence[str]) -> None:
    """`python -m bilstm.runtime.determinism MODEL FILE`: print `measure` as JSON."""
    if len(argv) != 2:
        raise SystemExit("usage: python -m bilstm.runtime.determinism MODEL FILE")
    with open(argv[1], encoding="utf-8") as handle:
        lines = [line for line in handle.read().splitlines() if line.strip()]
    result = {k: asdict(v) for k, v in measure(argv[0], lines).items()}
    print(json.dumps({"model": argv[0], "lines": len(lines), **result}, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
