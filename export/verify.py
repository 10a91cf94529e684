"""Parity of the fp32 export with PyTorch, and the cases every parity check runs.

The case list (`parity_cases`: ragged random batches plus the checkpoint's stored dev
examples) and the reference (`reference_outputs`: the PyTorch model) serve the fp32 check here
and the int8/fp16 check in quantize.py; the comparison itself is `parity.compare_cases`.
Feeds and references differ per task: each task's export hooks build them (export/tasks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bilstm.export.feeds import ragged_batch, text_encoder
from bilstm.export.parity import Case, ParityReport, Tolerance, compare_cases, valid_positions
from bilstm.export.tasks import export_task
from bilstm.models.checkpoint import Checkpoint
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


def random_feeds(ckpt: Checkpoint, batch: int, time: int, seed: int) -> dict[str, np.ndarray]:
    """Random graph inputs of a checkpoint's task at one (batch, time), ragged lengths."""
    return export_task(ckpt.task).random_feeds(ckpt, batch, time, seed)


def example_feeds(ckpt: Checkpoint) -> dict[str, np.ndarray] | None:
    """Graph inputs built from the checkpoint's stored dev examples, if any."""
    return export_task(ckpt.task).example_feeds(ckpt)


def reference_outputs(ckpt: Checkpoint, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the PyTorch model computes for the same inputs, by graph output name."""
    return export_task(ckpt.task).reference_outputs(ckpt, feeds)


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
