"""Parity of an `export_module` graph: ragged cases, PyTorch vs ONNX Runtime, onnx.reference.

The cases are made from the example inputs' dtypes and axes at (batch, time) shapes unlike the
example, with per-row lengths that include 1, 2 and the full time length: positions past a
row's length hold `pad_value` (a real padded batch), the lengths input (if any) holds the
lengths, a bool input with a time axis holds the validity mask. The comparison is the
project's one checker (`parity.compare_cases`, the fp32 `Tolerance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils import _pytree

from bilstm.core.errors import ExportError, ParityError
from bilstm.export.parity import Arrays, Case, CaseResult, Tolerance, compare_cases
from bilstm.export.verify import FP32_SHAPES

REFERENCE_ORACLE = "onnx.reference"


@dataclass(frozen=True)
class InputSpec:
    """One graph input: its example value and named dynamic axes ({dim: axis name})."""

    name: str
    example: torch.Tensor
    axes: Mapping[int, str] = field(default_factory=dict)
    is_lengths: bool = False

    def dim(self, axis: str) -> int | None:
        """The dimension holding `axis` (e.g. "time"), None when this input has none."""
        return next((d for d, n in self.axes.items() if n == axis), None)


@dataclass(frozen=True)
class Axes:
    """Which axis names mean batch and time, and the padding convention."""

    batch: str = "batch"
    time: str = "time"
    pad_value: float = 0.0


def case_shapes(specs: Sequence[InputSpec], axes: Axes) -> list[tuple[int, int]]:
    """(batch, time) of the random cases: FP32_SHAPES, each size moved off the example's;
    a size that is not dynamic stays the example's."""
    example_b = example_t = None
    dyn_b = dyn_t = False
    for s in specs:
        b, t = s.dim(axes.batch), s.dim(axes.time)
        if b is not None:
            example_b, dyn_b = int(s.example.shape[b]), True
        if t is not None:
            example_t, dyn_t = int(s.example.shape[t]), True
    shapes = []
    for b, t in FP32_SHAPES:
        if dyn_b and b == example_b:
            b += 2
        if dyn_t and t == example_t:
            t += 3
        shapes.append((b if dyn_b else example_b or 1, t if dyn_t else example_t or 1))
    return list(dict.fromkeys(shapes))


def _lengths(rng: np.random.Generator, batch: int, time: int, descending: bool) -> np.ndarray:
    lengths = rng.integers(1, time + 1, size=batch)
    fixed = [time, 1, 2][: min(3, batch)] if time >= 2 else [1] * min(3, batch)
    lengths[: len(fixed)] = fixed
    lengths = rng.permutation(lengths)
    return np.sort(lengths)[::-1].copy() if descending else lengths


def _value(
    rng: np.random.Generator,
    spec: InputSpec,
    shape: list[int],
    lengths: np.ndarray,
    axes: Axes,
) -> np.ndarray:
    example = spec.example.detach().cpu().numpy()
    b_dim, t_dim = spec.dim(axes.batch), spec.dim(axes.time)
    if spec.is_lengths:
        return lengths.astype(example.dtype)
    valid = None
    if b_dim is not None and t_dim is not None:
        steps = np.arange(shape[t_dim])
        grid = steps[None, :] < lengths[:, None]  # [batch, time]
        if b_dim > t_dim:
            grid = grid.T
        keep = [1] * len(shape)
        keep[b_dim], keep[t_dim] = shape[b_dim], shape[t_dim]
        valid = np.broadcast_to(grid.reshape(keep), shape)
    if example.dtype == np.bool_:
        if valid is not None:
            return valid.copy()
        return rng.random(shape) < 0.5
    if np.issubdtype(example.dtype, np.floating):
        value = rng.standard_normal(shape).astype(example.dtype)
    else:
        pool = np.unique(example)
        real = pool[pool != axes.pad_value]
        value = rng.choice(real if real.size else pool, size=shape).astype(example.dtype)
    if valid is not None:
        value = np.where(valid, value, np.asarray(axes.pad_value, dtype=value.dtype))
    return value


def ragged_cases(
    specs: Sequence[InputSpec], axes: Axes, seed: int = 0, descending: bool = False
) -> list[Case]:
    """Random padded batches at `case_shapes`, lengths 1, 2 and full included (unordered,
    or longest first with `descending`, for modules that pack with enforce_sorted=True)."""
    rng = np.random.default_rng(seed)
    cases = []
    for batch, time in case_shapes(specs, axes):
        lengths = _lengths(rng, batch, time, descending)
        feeds = {}
        for s in specs:
            shape = list(s.example.shape)
            if (d := s.dim(axes.batch)) is not None:
                shape[d] = batch
            if (d := s.dim(axes.time)) is not None:
                shape[d] = time
            feeds[s.name] = _value(rng, s, shape, lengths, axes)
        cases.append(Case(f"random batch={batch} time={time}", feeds))
    return cases


def given_case(name: str, specs: Sequence[InputSpec], values: Sequence[torch.Tensor]) -> Case:
    """A case from real inputs (the example, or batches the caller gives)."""
    if len(values) != len(specs):
        raise ExportError(f"{name}: {len(values)} tensors given, the module takes {len(specs)}")
    feeds = {}
    for s, v in zip(specs, values, strict=True):
        if not isinstance(v, torch.Tensor):
            raise ExportError(f"{name}: input '{s.name}' is {type(v).__name__}, not a tensor")
        feeds[s.name] = v.detach().cpu().numpy()
    return Case(name, feeds, dev=True)


def torch_outputs(
    module: torch.nn.Module, specs: Sequence[InputSpec], outputs: Sequence[str]
) -> Callable[[Arrays], Arrays]:
    """The reference: the original module run eagerly on a case's feeds."""

    def run(feeds: Arrays) -> Arrays:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs]
        with torch.no_grad():
            result = module(*args)
        leaves = flat_outputs(result, outputs)
        return {n: t.detach().cpu().numpy() for n, t in zip(outputs, leaves, strict=True)}

    return run


def flat_outputs(result: object, outputs: Sequence[str]) -> list[torch.Tensor]:
    """The module's result as a flat list of tensors, one per output name."""
    leaves, _ = _pytree.tree_flatten(result)
    bad = [type(x).__name__ for x in leaves if not isinstance(x, torch.Tensor)]
    if bad:
        raise ExportError(
            f"the module returns non-tensor values ({', '.join(bad)}); return tensors only"
        )
    if len(leaves) != len(outputs):
        raise ExportError(
            f"the module returns {len(leaves)} tensor(s) but output_names has {len(outputs)} "
            f"({', '.join(outputs)}); name each returned tensor"
        )
    return list(leaves)


def shape_checked(
    run: Callable[[Arrays], Arrays], reference: Callable[[Arrays], Arrays], engine: str
) -> tuple[Callable[[Arrays], Arrays], Callable[[Arrays], Arrays]]:
    """Both sides, where a candidate output of another shape is a `ParityError` (compare
    needs equal shapes), not a numpy broadcasting error."""
    last: dict[str, Arrays] = {}

    def want(feeds: Arrays) -> Arrays:
        last["want"] = reference(feeds)
        return last["want"]

    def have(feeds: Arrays) -> Arrays:
        got = run(feeds)
        for name, value in last["want"].items():
            if got[name].shape != value.shape:
                shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
                raise ParityError(
                    f"{engine} output '{name}' has shape {list(got[name].shape)}, PyTorch "
                    f"{list(value.shape)} (inputs {shapes})"
                )
        return got

    return want, have


def row_cases(cases: Sequence[Case], specs: Sequence[InputSpec], axes: Axes) -> list[Case]:
    """Every row of every case alone, cut to its own length on the time axis.

    `onnx.reference` ignores `sequence_lens` in its LSTM/GRU (docs/export-notes.md 10): a
    row fed alone at its own length needs none, so it is a fair second oracle.
    """
    lengths_spec = next((s for s in specs if s.is_lengths), None)
    rows = []
    for case in cases:
        first = specs[0]
        b_dim = first.dim(axes.batch)
        batch = case.feeds[first.name].shape[b_dim] if b_dim is not None else 1
        lens = _row_lengths(case, specs, axes, lengths_spec)
        for row in range(batch):
            feeds = {}
            for s in specs:
                v = case.feeds[s.name]
                if (d := s.dim(axes.batch)) is not None:
                    v = np.take(v, [row], axis=d)
                if (d := s.dim(axes.time)) is not None and lens is not None:
                    v = np.take(v, np.arange(int(lens[row])), axis=d)
                if s.is_lengths and lens is not None:
                    v = np.asarray([lens[row]], dtype=v.dtype)
                feeds[s.name] = v
            rows.append(Case(f"{case.name} row {row}", feeds, case.dev))
    return rows


def _row_lengths(
    case: Case, specs: Sequence[InputSpec], axes: Axes, lengths_spec: InputSpec | None
) -> np.ndarray | None:
    """Each row's length: the lengths input, else the non-padding extent of the time axis."""
    if lengths_spec is not None:
        return case.feeds[lengths_spec.name].astype(np.int64)
    for s in specs:
        b, t = s.dim(axes.batch), s.dim(axes.time)
        if b is None or t is None:
            continue
        v = np.moveaxis(case.feeds[s.name], (b, t), (0, 1))
        real = (v != axes.pad_value).reshape(v.shape[0], v.shape[1], -1).any(-1)
        last = np.where(real.any(1), real.shape[1] - np.argmax(real[:, ::-1], 1), 1)
        return last.astype(np.int64)
    return None


def reference_results(
    path: Path,
    module: torch.nn.Module,
    specs: Sequence[InputSpec],
    outputs: Sequence[str],
    cases: Sequence[Case],
    axes: Axes,
    rule: Tolerance,
) -> list[CaseResult]:
    """Second oracle: `onnx.reference` on each row alone against PyTorch on the same row."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(str(path))

    def run(feeds: Arrays) -> Arrays:
        return dict(zip(outputs, evaluator.run(list(outputs), feeds), strict=True))

    want, have = shape_checked(run, torch_outputs(module, specs, outputs), REFERENCE_ORACLE)
    rows = [
        Case(f"{REFERENCE_ORACLE}: {c.name}", c.feeds, c.dev) for c in row_cases(cases, specs, axes)
    ]
    return compare_cases(rows, None, want, have, outputs, rule, label=REFERENCE_ORACLE)
