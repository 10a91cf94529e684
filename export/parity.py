"""One parity checker: compare a candidate graph's outputs with a reference, case by case.

Three checks use it: the fp32 export against PyTorch (`verify.check_parity`), the int8/fp16
variant against PyTorch (`quantize.variant_parity`) and the standalone graph against the id
graph and PyTorch (`standalone.verify_standalone`). They differ only in their `Tolerance` (a
parameter here) and in the figures the model metadata stores (`ParityReport.to_dict`, whose
three JSON forms docs/model-file.md documents: `export.parity`, the variant's `export.parity`,
`export.standalone.parity`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bilstm.core.errors import ParityError
from bilstm.runtime import metadata as md

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
Form = Literal["fp32", "variant", "standalone"]


@dataclass(frozen=True)
class Tolerance:
    """How far a candidate may differ from its reference.

    `relative`: every value may differ by `value * (1 + |reference|)` (the fp32 rule: float32
    sums over thousands of terms round differently in two engines, so large logits get a
    relative bound). Otherwise the bound is on the max absolute difference. `outputs` names
    the outputs the bound applies to (None: all); the others are measured, not bounded (a
    variant's logits: their scale depends on the model). `name` labels it in messages.
    """

    value: float
    relative: bool = False
    outputs: tuple[str, ...] | None = None
    name: str = ""

    def bounds(self, output: str) -> bool:
        """Whether `output` is held to this tolerance (else only measured)."""
        return self.outputs is None or output in self.outputs

    def within(self, output: str, ref: np.ndarray, diff: np.ndarray) -> bool:
        """True when `diff` (float64, NaN already counted as inf) respects the bound."""
        if not self.bounds(output):
            return True
        limit = self.value * (1.0 + np.abs(ref)) if self.relative else self.value
        return bool(np.all(diff <= limit))

    def describe(self, reference: str = "reference") -> str:
        """E.g. "tolerance 1e-05 * (1 + |PyTorch value|)" or
        "the int8 tolerance 0.1 on probabilities"."""
        text = f"tolerance {self.value:g}"
        if self.name:
            text = f"the {self.name} {text}"
        if self.relative:
            text += f" * (1 + |{reference} value|)"
        if self.outputs is not None:
            text += " on " + ", ".join(self.outputs)
        return text


@dataclass(frozen=True)
class Case:
    """One parity input: graph feeds by input name; `dev` when built from stored dev examples."""

    name: str
    feeds: Arrays
    dev: bool = False


@dataclass
class CaseResult:
    """The difference on one output of one case against one reference."""

    case: str
    output: str
    shape: list[int]
    """Shape of the compared values: real positions only ([tokens, classes] for tagging)."""
    output_shape: list[int]
    """Shape of the output itself, padding included."""
    max_abs: float
    max_rel: float
    mean_abs: float
    within: bool
    reference: str = "pytorch"
    dev: bool = False
    argmax_agree: int = 0
    """Rows (tokens for tagging) whose argmax over the last axis agrees with the reference."""
    argmax_total: int = 0


def valid_positions(
    task: str | None, feeds: Mapping[str, np.ndarray], value: np.ndarray
) -> np.ndarray:
    """Only real positions count for per-token outputs (padding rows are never read).

    Tagging outputs [batch, time, ...] become [real tokens, ...]; two arrays padded to
    different widths (the standalone graph's and the Python runtime's) then line up.
    `task` None (a user's module, `export_module`): every position counts.
    """
    from bilstm.runtime.tasks import spec

    if task is None or not spec(task).per_token:
        return value
    lens = feeds[md.LENGTHS]
    return value[np.arange(value.shape[1])[None, :] < lens[:, None]]


def compare(
    case: Case,
    task: str | None,
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    outputs: Sequence[str],
    tolerance: Tolerance,
    reference_name: str = "pytorch",
) -> list[CaseResult]:
    """The one comparison: each of `outputs`, real positions only, judged by `tolerance`."""
    results = []
    for output in outputs:
        want = valid_positions(task, case.feeds, reference[output]).astype(np.float64)
        have = valid_positions(task, case.feeds, candidate[output]).astype(np.float64)
        # A NaN must fail and must show: as inf it exceeds every bound and every max.
        diff = np.nan_to_num(np.abs(want - have), nan=np.inf)
        rel = diff / np.maximum(np.abs(want), 1e-6)
        agree = want.argmax(-1) == have.argmax(-1) if want.size else np.zeros(0, bool)
        results.append(
            CaseResult(
                case=case.name,
                output=output,
                shape=list(want.shape),
                output_shape=list(reference[output].shape),
                max_abs=float(diff.max(initial=0.0)),
                max_rel=float(rel.max(initial=0.0)),
                mean_abs=float(diff.mean()) if diff.size else 0.0,
                within=tolerance.within(output, want, diff),
                reference=reference_name,
                dev=case.dev,
                argmax_agree=int(agree.sum()),
                argmax_total=int(agree.size),
            )
        )
    return results


def compare_cases(
    cases: Iterable[Case],
    task: str | None,
    reference: Callable[[Arrays], Arrays],
    candidate: Callable[[Arrays], Arrays],
    outputs: Sequence[str] | None,
    tolerance: Tolerance,
    label: str = "parity",
) -> list[CaseResult]:
    """The one compare loop: run both sides on every case, `compare` them, log each row.

    `outputs` None: every output the reference computes.
    """
    results: list[CaseResult] = []
    for case in cases:
        want = reference(case.feeds)
        got = candidate(case.feeds)
        rows = compare(case, task, want, got, list(outputs or want), tolerance)
        for row in rows:
            log.info(
                "%s %-40s %-13s max abs %.2e  max rel %.2e",
                label,
                row.case,
                row.output,
                row.max_abs,
                row.max_rel,
            )
        results.extend(rows)
    return results


@dataclass
class Agreement:
    """How often the candidate's predicted class (argmax, per token for tagging) agrees."""

    agree: int = 0
    total: int = 0
    dev_agree: int = 0
    dev_total: int = 0

    @classmethod
    def of(cls, cases: Iterable[CaseResult], output: str = md.LOGITS) -> Agreement:
        """Counts over the rows of `output` in `cases`, and over those of dev examples."""
        a = cls()
        for c in cases:
            if c.output == output:
                a.agree, a.total = a.agree + c.argmax_agree, a.total + c.argmax_total
                if c.dev:
                    a.dev_agree += c.argmax_agree
                    a.dev_total += c.argmax_total
        return a


@dataclass
class ParityReport:
    """Max abs/rel differences per output and case; `ok` when all are within tolerance.

    `form` picks which of the three stored JSON forms `to_dict` writes: "fp32" (`export.parity`
    of an fp32 export), "variant" (int8/fp16 `export.parity`) or "standalone"
    (`export.standalone.parity`).
    """

    rule: Tolerance
    cases: list[CaseResult] = field(default_factory=list)
    dev_examples: int = 0
    """Rows of the checkpoint's stored dev examples among the cases (0: random batches only)."""
    note: str | None = None
    """Why the check is weaker than usual (no dev examples), None when it is not."""
    form: Form = "fp32"
    problems: list[str] = field(default_factory=list)
    """Failures that are not a difference in numbers (e.g. a row that should be zero is not)."""
    provider: str | None = None
    """Variant: the ONNX Runtime provider the candidate ran on."""
    skipped: str | None = None
    """Variant: why the check could not run (fp16 without a provider that runs it)."""
    fp32_dev_metrics: dict[str, float] = field(default_factory=dict)
    """Variant: the dev metrics of training, next to the argmax agreement."""
    texts: int = 0
    """Standalone: texts run through the graph, `tokens` tokens, `scored_texts` with scores."""
    tokens: int = 0
    scored_texts: int = 0

    @property
    def tolerance(self) -> float:
        """The bound's value (its rule: `rule`)."""
        return self.rule.value

    @property
    def max_abs(self) -> float:
        """Largest absolute difference over the cases of the bounded outputs."""
        return self.worst()

    @property
    def ok(self) -> bool:
        """True when every difference is within tolerance and nothing else failed."""
        return not self.problems and all(c.within for c in self.cases)

    def worst(self, output: str | None = None, reference: str | None = None) -> float:
        """Max abs over the rows of `output` (None: the bounded ones) against `reference`."""
        return max(
            (
                c.max_abs
                for c in self.cases
                if (self.rule.bounds(c.output) if output is None else c.output == output)
                and reference in (None, c.reference)
            ),
            default=0.0,
        )

    def breaches(self) -> list[str]:
        """One line per failure: the problems, then each case/output beyond the bound."""
        many = len({c.reference for c in self.cases}) > 1
        return [
            *self.problems,
            *(
                f"{c.case} / {c.output}{f' vs {c.reference}' if many else ''}: "
                f"max abs {c.max_abs:.3e}"
                for c in self.cases
                if not c.within
            ),
        ]

    def raise_if_failed(self, subject: str, reference: str = "PyTorch") -> None:
        """`ParityError`: "{subject} differs from {reference} beyond {tolerance}: {breaches}"."""
        if not self.ok:
            raise ParityError(
                f"{subject} differs from {reference} beyond {self.rule.describe(reference)}: "
                + "; ".join(self.breaches())
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON form stored in the model metadata (docs/model-file.md), by `form`."""
        if self.skipped is not None:
            doc = {"tolerance": self.tolerance, "skipped": self.skipped}
        else:
            doc = {"fp32": self._fp32_dict, "variant": self._variant_dict}.get(
                self.form, self._standalone_dict
            )()
        if self.note:
            doc["note"] = self.note
        return doc

    def _fp32_dict(self) -> dict[str, Any]:
        cases = [
            {
                "case": c.case,
                "shape": c.shape,
                "max_abs": c.max_abs,
                "max_rel": c.max_rel,
                "within": c.within,
                "output": c.output,
            }
            for c in self.cases
        ]
        return {
            "tolerance": self.tolerance,
            "max_abs": self.max_abs,
            "dev_examples": self.dev_examples,
            "cases": cases,
        }

    def _variant_dict(self) -> dict[str, Any]:
        cases = [
            {
                "case": c.case,
                "output": c.output,
                "shape": c.output_shape,
                "max_abs": c.max_abs,
                "mean_abs": c.mean_abs,
            }
            for c in self.cases
        ]
        agreement = Agreement.of(self.cases)
        return {
            "tolerance": self.tolerance,
            "checked_output": md.PROBABILITIES,
            "provider": self.provider,
            "cases": cases,
            "max_abs": self.worst(md.PROBABILITIES),
            "logits_max_abs": self.worst(md.LOGITS),
            "argmax_agreement": agreement.agree / agreement.total if agreement.total else None,
            "examples_argmax_agreement": (
                agreement.dev_agree / agreement.dev_total if agreement.dev_total else None
            ),
            "examples": agreement.dev_total,
            "fp32_dev_metrics": self.fp32_dev_metrics,
        }

    def _standalone_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "texts": self.texts,
            "tokens": self.tokens,
            "token_ids": "identical to the Python runtime",
            "scored_texts": self.scored_texts,
            "tolerance": self.tolerance,
        }
        for reference in dict.fromkeys(c.reference for c in self.cases):
            for output in dict.fromkeys(c.output for c in self.cases):
                doc[f"{output}_max_abs_vs_{reference}"] = self.worst(output, reference)
        return doc
