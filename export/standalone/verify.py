"""Proof that a standalone graph computes what the Python runtime and the id graph compute.

Preprocessing must be identical (tokens, lower-cased keys, ids, char ids, blanks: compared
row by row with the Python runtime, `compare_preprocessing`); scores are compared with the id
graph fed the Python runtime's ids and with PyTorch through the one parity comparison
(`bilstm.export.parity.compare`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto

from bilstm.core.errors import ParityError
from bilstm.core.preprocess import TextEncoder
from bilstm.export.feeds import text_encoder
from bilstm.export.parity import Case, ParityReport, Tolerance, compare
from bilstm.export.standalone.casing import FINAL_SIGMA
from bilstm.export.standalone.names import (
    NUM_BLANKS,
    NUM_TOKENS,
    PAD,
    TEXT,
    TOKEN_KEYS,
    TOKENS,
)
from bilstm.export.standalone.nodes import tensor_info
from bilstm.models.checkpoint import Checkpoint
from bilstm.runtime import metadata as md

if TYPE_CHECKING:
    from bilstm.export.task_base import TextTask

PROBE_TEXTS = [
    "",
    "   ",
    "\t\n",
    "A gorgeous, witty movie.",
    "It's NOT bad; it’s GREAT!!!",
    "don't won't y'all rock'n'roll 'quoted' o'",
    "Café déjà-vu naïve façade ÉCOLE Straße STRASSE",
    "İstanbul İZMİR ΟΔΟΣ ὈΔΥΣΣΕΎΣ Σ ΣΑ ΑΣ. ΑΣ' Σ̈Α",
    "ǅemal ǄEMAL ß ẞ ﬁne ǰ ΐ",
    "Москва МОСКВА Ёлка — 東京タワー 북한 ١٢٣ ٤٥ 𝐀𝐁𝐂 x²",
    "emoji 😀😀 👍🏽 🇫🇷 ok👌 a\u200db \u00a0nbsp\u2009thin\u3000ideo",
    "snake_case __init__ ___ a___b ____ _",
    "numbers 3.14 1,000 10% $5 #tag @user e-mail@example.com http://x.y/z?q=1",
    "combining e\u0301 a\u0308 \u0301x tab\tsep\x0bvt\x1cfs\x85nel\u2028ls",
    "ΜΙΚΡΟΣ Μικρός ΌΣΟΣ ΣΟΦΟΣΣ ΑΣ̈ ΑΣΑ ΑΣ'Σ",
    "x" * 300,
    " ".join(["word"] * 300),
    "NUL\x00inside and \x7f del",
]
"""Texts the exporter checks on top of the checkpoint's examples (non-ASCII, casing,
punctuation, contractions, blanks, empty and whitespace-only texts, truncation)."""


_STRING_INTERNALS = {TOKENS, TOKEN_KEYS}
INTERNALS = (
    TOKENS,
    TOKEN_KEYS,
    md.INPUT_IDS,
    md.CHAR_IDS,
    md.MASK_POSITIONS,
    NUM_TOKENS,
    NUM_BLANKS,
)
"""Tensors of the preprocessing that the checks compare with the Python runtime."""


class StandaloneRunner:
    """Runs a standalone model on raw texts and returns its outputs plus `INTERNALS`."""

    def __init__(self, model: onnx.ModelProto, threads: int | None = None) -> None:
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        produced = {o for node in exposed.graph.node for o in node.output}
        outputs = {o.name for o in exposed.graph.output}
        for name in INTERNALS:
            if name in produced and name not in outputs:
                kind = TensorProto.STRING if name in _STRING_INTERNALS else TensorProto.INT64
                exposed.graph.output.append(tensor_info(name, kind, None))
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            exposed.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self.names = [o.name for o in self.session.get_outputs()]
        self.final_sigma = any(
            node.op_type == "Scan" and node.name.startswith("sa_") for node in model.graph.node
        )
        """Whether the graph applies the final-sigma rule (see `needs_final_sigma`)."""

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        values = self.session.run(self.names, {TEXT: np.array(list(texts), dtype=object)})
        return dict(zip(self.names, values, strict=True))


def _row_problems(
    got: dict[str, np.ndarray],
    r: int,
    text: str,
    enc: TextEncoder,
    hooks: TextTask,
    final_sigma: bool,
) -> list[str]:
    """How row r of the graph's preprocessing differs from the Python runtime's ([] if not)."""
    toks = enc.split(text)
    n = len(toks)
    problems = []
    if int(got[NUM_TOKENS][r]) != n:
        problems.append(f"num_tokens {int(got[NUM_TOKENS][r])} != {n}")
    row = [str(t) for t in got[TOKENS][r]]
    if row[:n] != toks or any(t != PAD for t in row[n:]):
        problems.append(f"tokens {row[: n + 1]} != {toks}")
    if TOKEN_KEYS in got:
        keys = [str(t) for t in got[TOKEN_KEYS][r][:n]]
        expected = [enc.tokenizer.normalize(t) for t in toks]
        if not final_sigma:  # left out where no vocabulary word has a sigma: ids still agree
            keys = [k.replace(FINAL_SIGMA, "σ") for k in keys]
            expected = [k.replace(FINAL_SIGMA, "σ") for k in expected]
        if keys != expected:
            problems.append(f"lower-cased {keys} != {expected}")
    ids = got[md.INPUT_IDS][r]
    expected_ids = enc.word_ids(hooks.python_tokens(toks))
    if ids[:n].tolist() != expected_ids or ids[n:].any():
        problems.append(f"ids {ids.tolist()} != {expected_ids}")
    if md.CHAR_IDS in got and not np.array_equal(got[md.CHAR_IDS][r], enc.char_ids(toks, len(ids))):
        problems.append("char_ids differ")
    return problems + hooks.preprocessing_problems(got, r, toks)


def compare_preprocessing(
    runner: StandaloneRunner,
    enc: TextEncoder,
    task: str,
    texts: Sequence[str],
    batch_size: int = 256,
) -> dict[str, Any]:
    """Tokens, lower-cased keys, ids (and char ids, blanks) of the graph vs the Python runtime.

    Returns counts: `texts`, `tokens`, `mismatched_texts` and up to 5 `examples` of mismatches.
    """
    stats: dict[str, Any] = {"texts": 0, "tokens": 0, "mismatched_texts": 0, "examples": []}
    hooks = _hooks(task)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        _count(stats, runner(chunk), chunk, enc, hooks, runner.final_sigma)
    return stats


def _count(
    stats: dict[str, Any],
    got: dict[str, np.ndarray],
    texts: Sequence[str],
    enc: TextEncoder,
    hooks: TextTask,
    final_sigma: bool,
) -> None:
    for r, text in enumerate(texts):
        stats["texts"] += 1
        stats["tokens"] += int(got[NUM_TOKENS][r])
        problems = _row_problems(got, r, text, enc, hooks, final_sigma)
        if problems:
            stats["mismatched_texts"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append({"text": text, "problems": problems})


def _hooks(task: str) -> TextTask:
    """The task's standalone checks (export/task_*.py)."""
    # Imported here: the task modules build on this package's nodes and names.
    from bilstm.export.tasks import text_task

    return text_task(task)


class _ChunkChecker:
    """Checks one batch of texts at a time and collects the results in one `ParityReport`."""

    def __init__(
        self,
        ckpt: Checkpoint,
        standalone: onnx.ModelProto,
        core: onnx.ModelProto,
        tolerance: float,
        against_pytorch: bool,
    ) -> None:
        self.ckpt, self.enc = ckpt, text_encoder(ckpt)
        self.hooks = hooks = _hooks(ckpt.task)
        self.runner = StandaloneRunner(standalone, threads=1)
        self.core = _session(core)
        self.core_names = [o.name for o in self.core.get_outputs()]
        self.pytorch = (lambda f: hooks.reference_outputs(ckpt, f)) if against_pytorch else None
        # Absolute bound on logits and probabilities: the graph inside is the id graph itself.
        self.rule = Tolerance(tolerance)
        self.report = ParityReport(rule=self.rule, form="standalone")
        self.ids: dict[str, Any] = {
            "texts": 0,
            "tokens": 0,
            "mismatched_texts": 0,
            "examples": [],
        }

    def _references(self, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
        run = self.core.run(self.core_names, feeds)
        refs = {"id_graph": dict(zip(self.core_names, run, strict=True))}
        if self.pytorch is not None:
            refs["pytorch"] = self.pytorch(feeds)
        return refs

    def check(self, name: str, chunk: Sequence[str]) -> None:
        """Preprocessing of every text; scores of the scored rows; zeros for the others."""
        task, hooks = self.ckpt.task, self.hooks
        got = self.runner(chunk)
        _count(self.ids, got, chunk, self.enc, hooks, self.runner.final_sigma)
        token_lists = [self.enc.split(t) for t in chunk]
        rows = [i for i, tokens in enumerate(token_lists) if hooks.scored(tokens)]
        others = [i for i in range(len(chunk)) if i not in rows]
        if others and (got[md.PROBABILITIES][others].any() or got[md.LOGITS][others].any()):
            self._problem("rows without tokens (or one blank) are not zero")
        if not rows:
            return
        self.report.scored_texts += len(rows)
        case = Case(name, hooks.python_feeds(self.enc, token_lists, rows))
        mine = {o: got[o][rows] for o in (md.LOGITS, md.PROBABILITIES)}
        refs = self._references(case.feeds)
        for ref_name, ref in refs.items():
            self.report.cases += compare(
                case, task, ref, mine, (md.LOGITS, md.PROBABILITIES), self.rule, ref_name
            )
        for problem in hooks.output_problems(self.ckpt, got, rows, refs):
            self._problem(problem)

    def _problem(self, text: str) -> None:
        if text not in self.report.problems:
            self.report.problems.append(text)


def verify_standalone(
    ckpt: Checkpoint,
    standalone: onnx.ModelProto,
    core: onnx.ModelProto,
    tolerance: float,
    against_pytorch: bool = True,
    batch_size: int = 32,
) -> ParityReport:
    """Prove the standalone graph equals the Python runtime + id graph on real texts.

    Texts: the checkpoint's examples and `PROBE_TEXTS`, in batches of similar length. Token ids
    (and tokens, lower-cased keys, char ids, blanks) must be identical; `probabilities` and
    `logits` within `tolerance` (max abs) of the id graph fed the Python runtime's ids and, with
    `against_pytorch`, of PyTorch; texts without tokens (or a cloze text without exactly one
    blank) must give zeros. Raises `ParityError`; returns the report whose `to_dict()` the
    metadata stores as `export.standalone.parity`.
    """
    checker = _ChunkChecker(ckpt, standalone, core, tolerance, against_pytorch)
    texts = [str(t) for t in ckpt.examples] + [*PROBE_TEXTS, *checker.hooks.extra_probe_texts]
    # Similar lengths per batch: little padding, and short and long texts both get checked.
    texts.sort(key=lambda t: len(checker.enc.split(t)))
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        checker.check(f"texts {start + 1}-{start + len(chunk)}", chunk)
    ids = checker.ids
    if ids["mismatched_texts"]:
        raise ParityError(
            f"the standalone graph's preprocessing differs from the Python runtime on "
            f"{ids['mismatched_texts']} of {ids['texts']} texts: {ids['examples'][:2]}"
        )
    report = checker.report
    report.texts, report.tokens = ids["texts"], ids["tokens"]
    report.raise_if_failed(
        "the standalone graph", "the id graph" + (" and PyTorch" if against_pytorch else "")
    )
    return report


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
