"""Parity: the exported model must compute what the PyTorch model computes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilstm.models.checkpoint import Checkpoint, predict_logits
from bilstm.runtime import metadata as md
from bilstm.runtime.errors import ParityError
from bilstm.runtime.preprocess import MASK, TextEncoder, blank_position
from bilstm.runtime.session import Device, create_session

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-5
"""fp32 exports: every value may differ by at most tolerance * (1 + |reference|), i.e. 1e-5
absolute near zero and 1e-5 relative for large logits (float32 sums over thousands of terms,
as in a cloze model's vocabulary-wide output layer, round differently in the two engines)."""


NO_EXAMPLES_NOTE = (
    "no dev examples to check parity on (the checkpoint's examples.json is missing, empty or "
    "has no text with a token): parity was checked on random batches only; keep examples.json "
    "(bilstm train writes it) to check real inputs too"
)


@dataclass
class ParityReport:
    """Max abs/rel differences per output and case; `ok` when all are within tolerance."""

    tolerance: float
    cases: list[dict[str, Any]] = field(default_factory=list)
    dev_examples: int = 0
    """Rows of the checkpoint's stored dev examples among the cases (0: random batches only)."""
    note: str | None = None
    """Why the check is weaker than usual (no dev examples), None when it is not."""

    @property
    def max_abs(self) -> float:
        """Largest absolute difference over all cases and outputs."""
        return max((c["max_abs"] for c in self.cases), default=0.0)

    @property
    def ok(self) -> bool:
        """True when every difference is within tolerance (see `FP32_TOLERANCE`)."""
        return all(c["within"] for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the model metadata."""
        report: dict[str, Any] = {
            "tolerance": self.tolerance,
            "max_abs": self.max_abs,
            "dev_examples": self.dev_examples,
            "cases": self.cases,
        }
        if self.note:
            report["note"] = self.note
        return report


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


def valid_positions(task: str, feeds: dict[str, np.ndarray], value: np.ndarray) -> np.ndarray:
    """Only real positions count for per-token outputs (padding rows are never read)."""
    if task != "tag":
        return value
    lens = feeds[md.LENGTHS]
    return value[np.arange(value.shape[1])[None, :] < lens[:, None]]


def _compare(name: str, ref: np.ndarray, got: np.ndarray, tolerance: float) -> dict[str, Any]:
    ref64 = ref.astype(np.float64)
    diff = np.abs(ref64 - got.astype(np.float64))
    rel = diff / np.maximum(np.abs(ref64), 1e-6)
    return {
        "case": name,
        "shape": list(ref.shape),
        "max_abs": float(diff.max(initial=0.0)),
        "max_rel": float(rel.max(initial=0.0)),
        "within": bool(np.all(diff <= tolerance * (1.0 + np.abs(ref64)))),
    }


def check_parity(
    ckpt: Checkpoint,
    onnx_path: Path,
    tolerance: float = FP32_TOLERANCE,
    shapes: Sequence[tuple[int, int]] = ((5, 11), (3, 29), (1, 1)),
    seed: int = 0,
) -> ParityReport:
    """Compare PyTorch and ONNX Runtime on every output of the graph.

    Cases: ragged random batches at `shapes` (batch, time), plus the checkpoint's stored dev
    examples (without any, the report's `dev_examples` is 0 and its `note` says so). Raises
    `ParityError` listing every breach.
    """
    session = create_session(onnx_path, device=Device.cpu, threads=1)
    cases = [
        (f"random batch={b} time={t}", random_feeds(ckpt, b, t, seed + i))
        for i, (b, t) in enumerate(shapes)
    ]
    real = example_feeds(ckpt)
    report = ParityReport(tolerance=tolerance)
    if real is not None:
        first = next(iter(real.values()))
        cases.append((f"dev examples batch={first.shape[0]} time={first.shape[1]}", real))
        report.dev_examples = int(first.shape[0])
    else:
        report.note = NO_EXAMPLES_NOTE
    names = [o.name for o in session.get_outputs()]
    for name, feeds in cases:
        ref = reference_outputs(ckpt, feeds)
        got = dict(zip(names, session.run(names, feeds), strict=True))
        for output, value in ref.items():
            row = _compare(
                name,
                valid_positions(ckpt.task, feeds, value),
                valid_positions(ckpt.task, feeds, got[output]),
                tolerance,
            )
            row["output"] = output
            report.cases.append(row)
            log.info(
                "parity %-40s %-13s max abs %.2e  max rel %.2e",
                name,
                output,
                row["max_abs"],
                row["max_rel"],
            )
    if not report.ok:
        breaches = [
            f"{c['case']} / {c['output']}: max abs {c['max_abs']:.3e}"
            for c in report.cases
            if not c["within"]
        ]
        raise ParityError(
            f"{onnx_path}: ONNX Runtime differs from PyTorch beyond tolerance "
            f"{tolerance:g} * (1 + |PyTorch value|): " + "; ".join(breaches)
        )
    return report
