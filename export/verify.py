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
from bilstm.runtime.batching import pad_batch
from bilstm.runtime.errors import ParityError
from bilstm.runtime.session import Device, create_session
from bilstm.runtime.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-5
"""Max abs difference allowed on logits and probabilities for fp32 exports."""


@dataclass
class ParityReport:
    """Max abs/rel differences per output and case; `ok` when all are within tolerance."""

    tolerance: float
    cases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_abs(self) -> float:
        """Largest absolute difference over all cases and outputs."""
        return max((c["max_abs"] for c in self.cases), default=0.0)

    @property
    def ok(self) -> bool:
        """True when every difference is within tolerance."""
        return self.max_abs <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the model metadata."""
        return {"tolerance": self.tolerance, "max_abs": self.max_abs, "cases": self.cases}


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


def _compare(name: str, ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    diff = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    rel = diff / np.maximum(np.abs(ref), 1e-6)
    return {
        "case": name,
        "shape": list(ref.shape),
        "max_abs": float(diff.max(initial=0.0)),
        "max_rel": float(rel.max(initial=0.0)),
    }


def check_parity(
    ckpt: Checkpoint,
    onnx_path: Path,
    tolerance: float = FP32_TOLERANCE,
    shapes: Sequence[tuple[int, int]] = ((5, 11), (3, 29), (1, 1)),
    seed: int = 0,
) -> ParityReport:
    """Compare PyTorch and ONNX Runtime logits and probabilities.

    Cases: ragged random batches at `shapes` (batch, time), none equal to an export example,
    plus the checkpoint's stored dev texts. Raises `ParityError` listing every breach.
    """
    session = create_session(onnx_path, device=Device.cpu, threads=1)
    cases: list[tuple[str, np.ndarray, np.ndarray]] = []
    for i, (batch, time) in enumerate(shapes):
        ids, lens = ragged_batch(ckpt.model_config.vocab_size, batch, time, seed + i)
        cases.append((f"random batch={batch} time={time}", ids, lens))
    if ckpt.examples:
        tok = Tokenizer(ckpt.tokenizer)
        seqs = [ckpt.vocabulary.encode(tok.tokenize(t)) for t in ckpt.examples]
        seqs = [s for s in seqs if s]
        if seqs:
            ids, lens = pad_batch(seqs)
            cases.append((f"dev examples batch={len(seqs)} time={ids.shape[1]}", ids, lens))

    report = ParityReport(tolerance=tolerance)
    for name, ids, lens in cases:
        logits = predict_logits(ckpt.model, ids, lens)
        ref = {md.LOGITS: logits.numpy(), md.PROBABILITIES: torch.softmax(logits, -1).numpy()}
        got = dict(
            zip(
                [md.LOGITS, md.PROBABILITIES],
                session.run([md.LOGITS, md.PROBABILITIES], {md.INPUT_IDS: ids, md.LENGTHS: lens}),
                strict=True,
            )
        )
        for output, value in ref.items():
            row = _compare(name, value, got[output])
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
            if c["max_abs"] > tolerance
        ]
        raise ParityError(
            f"{onnx_path}: ONNX Runtime differs from PyTorch beyond tolerance "
            f"{tolerance:g}: " + "; ".join(breaches)
        )
    return report
