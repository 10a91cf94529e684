"""Parity of the fp32 export with PyTorch, and the cases every parity check runs.

The case list (`parity_cases`: ragged random batches plus the checkpoint's stored dev
examples) and the reference (`reference_outputs`: the PyTorch model) serve the fp32 check here
and the int8/fp16 check in quantize.py; the comparison itself is `parity.compare_cases`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bilstm.export.parity import Case, ParityReport, Tolerance, compare_cases, valid_positions
from bilstm.models.checkpoint import Checkpoint, predict_logits
from bilstm.runtime import metadata as md
from bilstm.runtime.preprocess import MASK, TextEncoder, blank_position
from bilstm.runtime.session import Device, create_session

__all__ = [
    "FP32_SHAPES",
    "FP32_TOLERANCE",
    "NO_EXAMPLES_NOTE",
    "ParityReport",
    "check_parity",
    "dev_rows",
    "example_feeds",
    "parity_cases",
    "ragged_batch",
    "random_feeds",
    "reference_outputs",
    "text_encoder",
    "valid_positions",
]

FP32_TOLERANCE = 1e-5
"""fp32 exports: every value may differ by at most tolerance * (1 + |reference|), i.e. 1e-5
absolute near zero and 1e-5 relative for large logits (float32 sums over thousands of terms,
as in a cloze model's vocabulary-wide output layer, round differently in the two engines)."""


NO_EXAMPLES_NOTE = (
    "no dev examples to check parity on (the checkpoint's examples.json is missing, empty or "
    "has no text with a token): parity was checked on random batches only; keep examples.json "
    "(bilstm train writes it) to check real inputs too"
)

FP32_SHAPES: tuple[tuple[int, int], ...] = ((5, 11), (3, 29), (1, 1))
"""(batch, time) of the random cases: ragged, with a single-step and a single-row batch."""


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


def random_feeds(ckpt: Checkpoint, batch: int, time: int, seed: int) -> dict[str, np.ndarray]:
    """Random graph inputs of a checkpoint's task at one (batch, time), ragged lengths."""
    cfg = ckpt.model_config
    rng = np.random.default_rng(seed + 1000)
    if cfg.task == "forecast":
        _, lens = ragged_batch(3, batch, time, seed)
        scale = ckpt.task_config.get("scaler", {})
        mean = np.asarray(scale.get("mean", np.zeros(cfg.num_features)), np.float32)
        std = np.asarray(scale.get("std", np.ones(cfg.num_features)), np.float32)
        x = rng.normal(size=(batch, time, cfg.num_features)).astype(np.float32) * std + mean
        return {md.FEATURES: x.astype(np.float32), md.LENGTHS: lens}
    ids, lens = ragged_batch(cfg.vocab_size, batch, time, seed)
    feeds = {md.INPUT_IDS: ids, md.LENGTHS: lens}
    if cfg.char_vocab_size:
        chars = rng.integers(1, cfg.char_vocab_size, size=(batch, time, cfg.max_word_length))
        word_len = rng.integers(1, cfg.max_word_length + 1, size=(batch, time, 1))
        chars[np.arange(cfg.max_word_length)[None, None, :] >= word_len] = 0
        chars[ids == 0] = 0
        feeds[md.CHAR_IDS] = chars.astype(np.int64)
    if cfg.task == "cloze":
        feeds[md.MASK_POSITIONS] = (rng.random(batch) * lens).astype(np.int64)
    return feeds


def example_feeds(ckpt: Checkpoint) -> dict[str, np.ndarray] | None:
    """Graph inputs built from the checkpoint's stored dev examples, if any."""
    if not ckpt.examples:
        return None
    if ckpt.task == "forecast":
        x = np.asarray(ckpt.examples, dtype=np.float32)
        return {md.FEATURES: x, md.LENGTHS: np.full(len(x), x.shape[1], np.int64)}
    enc = text_encoder(ckpt)
    token_lists = [enc.split(str(t)) for t in ckpt.examples]
    positions: list[int] = []
    if ckpt.task == "cloze":
        kept = []
        for toks in token_lists:
            pos = blank_position(toks) if toks else None
            if pos is not None:
                toks[pos] = MASK
                kept.append(toks)
                positions.append(pos)
        token_lists = kept
    token_lists = [t for t in token_lists if t]
    if not token_lists:
        return None
    feeds = enc.batch(token_lists)
    if ckpt.task == "cloze":
        feeds[md.MASK_POSITIONS] = np.asarray(positions, np.int64)
    return feeds


def reference_outputs(ckpt: Checkpoint, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the PyTorch model computes for the same inputs, by graph output name."""
    cfg = ckpt.model_config
    if cfg.task == "forecast":
        out = predict_logits(ckpt.model, feeds[md.FEATURES], feeds[md.LENGTHS])
        return {md.FORECAST: out.numpy()}
    extra = [feeds[k] for k in (md.CHAR_IDS, md.MASK_POSITIONS) if k in feeds]
    logits = predict_logits(ckpt.model, feeds[md.INPUT_IDS], feeds[md.LENGTHS], *extra)
    return {md.LOGITS: logits.numpy(), md.PROBABILITIES: torch.softmax(logits, -1).numpy()}


def parity_cases(
    ckpt: Checkpoint, shapes: Sequence[tuple[int, int]] = FP32_SHAPES, seed: int = 0
) -> list[Case]:
    """The one case list: ragged random batches at `shapes` (batch, time; lengths include 1, 2
    and the full time), then the checkpoint's stored dev examples when it has usable ones."""
    cases = [
        Case(f"random batch={b} time={t}", random_feeds(ckpt, b, t, seed + i))
        for i, (b, t) in enumerate(shapes)
    ]
    real = example_feeds(ckpt)
    if real is not None:
        first = next(iter(real.values()))
        cases.append(Case(f"dev examples batch={first.shape[0]} time={first.shape[1]}", real, True))
    return cases


def dev_rows(cases: Sequence[Case]) -> int:
    """Rows of stored dev examples among `cases` (0: random batches only)."""
    return sum(int(next(iter(c.feeds.values())).shape[0]) for c in cases if c.dev)


def check_parity(
    ckpt: Checkpoint,
    onnx_path: Path,
    tolerance: float = FP32_TOLERANCE,
    shapes: Sequence[tuple[int, int]] = FP32_SHAPES,
    seed: int = 0,
) -> ParityReport:
    """Compare PyTorch and ONNX Runtime on every output of the graph (`FP32_TOLERANCE` rule).

    Cases: `parity_cases` (without dev examples, the report's `dev_examples` is 0 and its
    `note` says so). Raises `ParityError` listing every breach.
    """
    session = create_session(onnx_path, device=Device.cpu, threads=1)
    names = [o.name for o in session.get_outputs()]

    def onnx_outputs(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feeds), strict=True))

    cases = parity_cases(ckpt, shapes, seed)
    rule = Tolerance(tolerance, relative=True)
    report = ParityReport(
        rule=rule,
        cases=compare_cases(
            cases, ckpt.task, lambda f: reference_outputs(ckpt, f), onnx_outputs, None, rule
        ),
        dev_examples=dev_rows(cases),
    )
    if not report.dev_examples:
        report.note = NO_EXAMPLES_NOTE
    report.raise_if_failed(f"{onnx_path}: ONNX Runtime")
    return report
