"""Standalone models: raw text in, labels out, with ONNX Runtime's built-in operators only.

`bilstm export CHECKPOINT OUT.onnx --with-tokenizer` wraps the id-based graph of graph.py in the
preprocessing and postprocessing that the Python runtime does, so that any language with ONNX
Runtime can use the file without bilstm:

    text[batch] (string)
      -> com.microsoft `Tokenizer`, `tokenexp` = the model's pattern translated to RE2 so that
         RE2 reads it exactly as Python's `re` does                 tokens[batch, time], "" pads
      -> Python's `str.lower`, per token: the token's characters (`Tokenizer`, tokenexp "."),
         ai.onnx.ml `LabelEncoder` with Python's lower-case mapping of every character that has
         one, the final-sigma rule where the vocabulary makes it matter, then the characters
         joined again (`StringConcat` in a `Loop`)
      -> `LabelEncoder`: token -> id (unknown -> 1); character ids (tag); the `___` blank (cloze)
      -> the id graph (input_ids, lengths, char_ids, mask_positions), unchanged
      -> `LabelEncoder`: class index -> label (classify, tag), word id -> word (cloze)

Why not the obvious operators:
- RE2's `\\w`, `\\s` and `\\d` are ASCII-only, Python's are Unicode. The translation replaces
  every class by the explicit code point ranges Python's `re` gives it, so both engines read the
  same set. RE2 has no look-around, back-references or Python's `$`; those are refused.
- ONNX Runtime's `Tokenizer` compiles `tokenexp` with RE2's longest-match option (POSIX
  leftmost-longest), Python's `re` returns the leftmost-first match. They agree on the built-in
  patterns (`_PROVEN_PATTERNS`: alternatives start with disjoint characters, greedy
  repetitions of non-empty parts); other patterns are refused rather than approximated.
- `StringNormalizer(case_change_action="LOWER")` calls the C library's `towlower` in a named
  locale (default `en_US.UTF-8`): it fails to load where that locale is not installed (this
  machine), maps one character to one (Python: "İ" -> "i̇") and knows no final sigma (Python:
  "ΟΔΟΣ" -> "οδος"). The table here is Python's own mapping, frozen at export time.

Exactness is checked at every export (`verify_standalone`): tokens, lower-cased keys and ids of
the checkpoint's examples plus `PROBE_TEXTS` must be identical to the Python runtime's, and
probabilities must match the id graph and PyTorch.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from bilstm.export.builder import GraphBuilder
from bilstm.models.checkpoint import Checkpoint
from bilstm.runtime import metadata as md
from bilstm.runtime.errors import ExportError, ParityError
from bilstm.runtime.preprocess import BLANK, MASK, TextEncoder
from bilstm.runtime.tokenizer import Tokenizer
from bilstm.runtime.vocab import PAD_ID, UNK_ID

if sys.version_info >= (3, 11):
    from re import _constants as _sre
    from re import _parser as _sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_constants as _sre
    import sre_parse as _sre_parse

STANDALONE_OPSET = 20
"""`StringConcat` (joining lower-cased characters) needs opset 20."""
ML, MS = "ai.onnx.ml", "com.microsoft"
DEFAULT_TOP_K = 5
"""Words a standalone cloze model returns per blank."""

# Graph input and the outputs added to those of the id graph (docs/model-file.md).
TEXT = md.TEXT
LABEL, CLASSES, NUM_TOKENS = "label", "classes", "num_tokens"
TOKENS, TAGS, CONFIDENCES = "tokens", "tags", "confidences"
WORDS, WORD_PROBABILITIES, NUM_BLANKS = "words", "word_probabilities", "num_blanks"
# Internal tensors, exposed only by `run_with_internals` for the parity checks.
TOKEN_KEYS = "token_keys"

PAD = ""
"""Padding string of the in-graph tokens; the patterns never match the empty string."""

# Patterns whose leftmost-first (Python) and leftmost-longest (ONNX Runtime's RE2 options)
# matches are the same on every input: the alternatives start with disjoint characters and
# every repetition is greedy over a non-empty part that cannot run into what follows it.
# Literal strings on purpose: a new built-in pattern must be checked before it is listed.
_PROVEN_PATTERNS = frozenset({r"\w+(?:['’]\w+)*|[^\w\s]", r"\S+"})

_MAX_CP = 0x110000
_SURROGATES = slice(0xD800, 0xE000)
_CATEGORY_ESCAPES = {
    _sre.CATEGORY_WORD: r"\w",
    _sre.CATEGORY_NOT_WORD: r"\W",
    _sre.CATEGORY_DIGIT: r"\d",
    _sre.CATEGORY_NOT_DIGIT: r"\D",
    _sre.CATEGORY_SPACE: r"\s",
    _sre.CATEGORY_NOT_SPACE: r"\S",
}
_ALLOWED_FLAGS = re.UNICODE | re.VERBOSE | re.DOTALL | re.MULTILINE | re.ASCII

# Final-sigma context classes of characters (Python's `handle_capital_sigma`).
_OTHER, _IGNORABLE, _CASED = 0, 1, 2
CAPITAL_SIGMA, FINAL_SIGMA = "Σ", "ς"

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


# -- pattern translation ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _all_characters() -> str:
    return "".join(map(chr, range(_MAX_CP)))


@functools.cache
def _category(escape: str, ascii_only: bool) -> np.ndarray:
    """Code points Python's `re` matches with `escape` (e.g. \\w), as a boolean mask."""
    mask = np.zeros(_MAX_CP, dtype=bool)
    flags = re.ASCII if ascii_only else 0
    for m in re.finditer(f"{escape}+", _all_characters(), flags):
        mask[m.start() : m.end()] = True
    return mask


def _char(cp: int) -> str:
    c = chr(cp)
    return c if c.isascii() and c.isalnum() else f"\\x{{{cp:X}}}"


def _class(mask: np.ndarray, what: str) -> str:
    """An RE2 class of exactly the code points in `mask` (surrogates cannot occur in UTF-8)."""
    mask = mask.copy()
    mask[_SURROGATES] = False
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.view(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2] - 1
    if not len(starts):
        raise ExportError(f"tokenizer.pattern: the class {what} matches no character")
    if len(starts) == 1 and starts[0] == ends[0]:
        return _char(int(starts[0]))
    parts = [
        _char(int(a)) if a == b else f"{_char(int(a))}-{_char(int(b))}"
        for a, b in zip(starts, ends, strict=True)
    ]
    return "[" + "".join(parts) + "]"


def _class_items(items: Sequence[tuple[Any, Any]], ascii_only: bool) -> np.ndarray:
    mask = np.zeros(_MAX_CP, dtype=bool)
    negate = False
    for op, av in items:
        if op == _sre.NEGATE:
            negate = True
        elif op == _sre.LITERAL:
            mask[av] = True
        elif op == _sre.RANGE:
            mask[av[0] : av[1] + 1] = True
        elif op == _sre.CATEGORY and av in _CATEGORY_ESCAPES:
            mask |= _category(_CATEGORY_ESCAPES[av], ascii_only)
        else:
            raise ExportError(f"tokenizer.pattern: the class item {op} {av} has no RE2 form")
    return ~mask if negate else mask


def _translate(items: Any, flags: int) -> str:
    ascii_only = bool(flags & re.ASCII)
    out = []
    for op, av in items:
        if op == _sre.LITERAL:
            out.append(_char(av))
        elif op == _sre.NOT_LITERAL:
            mask = np.ones(_MAX_CP, dtype=bool)
            mask[av] = False
            out.append(_class(mask, f"[^{chr(av)}]"))
        elif op == _sre.ANY:
            mask = np.ones(_MAX_CP, dtype=bool)
            if not flags & re.DOTALL:
                mask[ord("\n")] = False
            out.append(_class(mask, "."))
        elif op == _sre.IN:
            out.append(_class(_class_items(av, ascii_only), "[...]"))
        elif op == _sre.BRANCH:
            out.append("(?:" + "|".join(_translate(b, flags) for b in av[1]) + ")")
        elif op == _sre.SUBPATTERN:
            group, add_flags, del_flags, sub = av
            if group is not None:
                raise ExportError(
                    "tokenizer.pattern has a capturing group, with which Python's findall "
                    "returns the group instead of the match; write (?:...)"
                )
            if add_flags or del_flags:
                raise ExportError("tokenizer.pattern: scoped inline flags have no RE2 form")
            out.append("(?:" + _translate(sub, flags) + ")")
        elif op == _sre.MAX_REPEAT:
            low, high, sub = av
            if low > 1000 or (high != _sre.MAXREPEAT and high > 1000):
                raise ExportError("tokenizer.pattern: RE2 allows repetition counts up to 1000")
            quant = {(0, _sre.MAXREPEAT): "*", (1, _sre.MAXREPEAT): "+", (0, 1): "?"}.get(
                (low, high),
                f"{{{low},}}" if high == _sre.MAXREPEAT else f"{{{low},{high}}}",
            )
            out.append("(?:" + _translate(sub, flags) + ")" + quant)
        else:
            what = {
                _sre.AT: "an anchor or word boundary",
                _sre.ASSERT: "a look-around",
                _sre.ASSERT_NOT: "a look-around",
                _sre.GROUPREF: "a back-reference",
                _sre.MIN_REPEAT: "a lazy repetition (RE2 runs longest-match here)",
            }.get(op, str(op))
            raise ExportError(f"tokenizer.pattern uses {what}, which has no exact RE2 form")
    return "".join(out)


def re2_pattern(pattern: str) -> str:
    """`pattern` (Python `re` syntax) as an RE2 pattern that matches exactly the same text.

    Raises `ExportError` naming `tokenizer.pattern` when it cannot be exported exactly.
    """
    if pattern not in _PROVEN_PATTERNS:
        raise ExportError(
            f"tokenizer.pattern {pattern!r} cannot be exported --with-tokenizer: ONNX Runtime's "
            "Tokenizer matches leftmost-longest and Python's re leftmost-first, and that they "
            "agree is only established for the built-in patterns "
            f"{sorted(_PROVEN_PATTERNS)}; export without --with-tokenizer"
        )
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error as exc:  # pragma: no cover - stored patterns compiled at training
        raise ExportError(f"tokenizer.pattern {pattern!r} is not a valid regex: {exc}") from None
    flags = parsed.state.flags
    if flags & ~_ALLOWED_FLAGS:
        raise ExportError(f"tokenizer.pattern {pattern!r}: its flags have no exact RE2 form")
    if re.compile(pattern).fullmatch(""):
        raise ExportError(f"tokenizer.pattern {pattern!r} can match the empty string")
    return _translate(parsed, flags)


# -- lower-casing tables --------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def lowercase_table() -> tuple[list[str], list[str]]:
    """Every character whose `str.lower()` differs from it, and that lower-case form."""
    keys, values = [], []
    for cp in range(_MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        low = c.lower()
        if low != c:
            keys.append(c)
            values.append(low)
    return keys, values


@functools.lru_cache(maxsize=1)
def sigma_context_table() -> tuple[list[str], list[int]]:
    """Characters by their role in Python's final-sigma rule: case-ignorable or cased.

    Python lower-cases "Σ" to "ς" when a cased character precedes it and none follows it,
    skipping case-ignorable characters both ways. The classes are read off `str.lower` itself.
    """
    keys, values = [], []
    for cp in range(_MAX_CP):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        if (c + CAPITAL_SIGMA).lower().endswith(FINAL_SIGMA):
            keys.append(c)
            values.append(_CASED)
        elif ("A" + c + CAPITAL_SIGMA).lower().endswith(FINAL_SIGMA):
            keys.append(c)
            values.append(_IGNORABLE)
    return keys, values


def needs_final_sigma(vocabulary: Sequence[str]) -> bool:
    """True when σ/ς decide a lookup: without them in the vocabulary every token with Σ is
    unknown whichever sigma it lower-cases to, and the rule can be left out of the graph."""
    return any("σ" in t or "ς" in t for t in vocabulary)


# -- graph --------------------------------------------------------------------------------------


def _vi(name: str, elem: int, dims: Sequence[str | int] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if dims is None else list(dims))


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=object)


class _Builder:
    """Preprocessing and postprocessing nodes around the id graph."""

    def __init__(self, opset: int) -> None:
        self.g = GraphBuilder(opset, prefix="sa_")
        self.opset = opset
        self.value_info: list[onnx.ValueInfoProto] = []
        """Types of the contrib ops' outputs: onnx knows no schema for them, and its
        LabelEncoder shape inference crashes (onnx 1.23) on an input of unknown type."""

    def const(self, base: str, value: Any) -> str:
        return self.g.const(base, value if isinstance(value, np.ndarray) else np.asarray(value))

    def i64(self, base: str, values: Sequence[int] | int) -> str:
        return self.const(base, np.asarray(values, dtype=np.int64))

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        return str(self.g.op(op_type, inputs, [out] if out else 1, **attrs))

    def lookup(
        self,
        x: str,
        keys: Sequence[str] | Sequence[int],
        values: Sequence[str] | Sequence[int],
        default: str | int,
        out: str | None = None,
    ) -> str:
        """ai.onnx.ml LabelEncoder: keys -> values, anything else -> default."""
        attrs: dict[str, Any] = {}
        attrs["keys_strings" if isinstance(keys[0], str) else "keys_int64s"] = list(keys)
        if isinstance(default, str):
            attrs |= {"values_strings": list(values), "default_string": default}
        else:
            attrs |= {"values_int64s": list(values), "default_int64": default}
        return self.op("LabelEncoder", [x], out, domain=ML, **attrs)

    def tokenize(self, x: str, tokenexp: str, dims: list[str], out: str | None = None) -> str:
        """com.microsoft Tokenizer: the matches of `tokenexp` along a new last axis, "" pads."""
        name = self.op(
            "Tokenizer",
            [x],
            out,
            domain=MS,
            mark=0,
            mincharnum=1,
            pad_value=PAD,
            tokenexp=tokenexp,
        )
        self.value_info.append(_vi(name, TensorProto.STRING, dims))
        return name

    def shape_part(self, x: str, start: int, end: int) -> str:
        return self.op(
            "Slice", [self.op("Shape", [x]), self.i64("s", [start]), self.i64("e", [end])]
        )

    def blanks(self, dims: list[str]) -> str:
        """A tensor of "" of the shape given by the concatenated 1-D shape pieces `dims`."""
        shape = self.op("Concat", dims, axis=0) if len(dims) > 1 else dims[0]
        return self.op("Expand", [self.const("empty", _strings([PAD])), shape])

    def split(self, text: str, pattern: str, max_length: int) -> str:
        """tokens[batch, width]: width = min(max(most tokens, 1), max_length), "" padded."""
        found = self.tokenize(text, pattern, ["batch", "matches"])
        batch = self.op("Shape", [text])
        padded = self.op("Concat", [found, self.blanks([batch, self.i64("one", [1])])], axis=1)
        width = self.op(
            "Min",
            [
                self.op("Max", [self.shape_part(found, 1, 2), self.i64("one", [1])]),
                self.i64("max_length", [max_length]),
            ],
        )
        return self.op(
            "Slice", [padded, self.i64("zero", [0]), width, self.i64("axis", [1])], TOKENS
        )

    def characters(self, tokens: str) -> str:
        """chars[batch, time, width]: the characters of each token, "" padded, width >= 1.

        Where no token has a character (every text of the batch without tokens) the width
        would be 0, and ONNX Runtime's `Scan` over that axis fails or crashes the process: one
        "" column is kept then, which the lookups, lower-casing and joining all ignore.
        """
        found = self.tokenize(tokens, ".", ["batch", "time", "chars"])
        shape = self.op("Shape", [tokens])
        padded = self.op("Concat", [found, self.blanks([shape, self.i64("one", [1])])], axis=2)
        width = self.op("Max", [self.shape_part(found, 2, 3), self.i64("one", [1])])
        return self.op("Slice", [padded, self.i64("zero", [0]), width, self.i64("axis", [2])])

    def lower(self, tokens: str, chars: str, final_sigma: bool) -> str:
        """Python's `str.lower` of each token: per character, then joined."""
        keys, values = lowercase_table()
        changed = self.op(
            "Cast", [self.lookup(chars, keys, [1] * len(keys), 0)], to=TensorProto.BOOL
        )
        low = self.op("Where", [changed, self.lookup(chars, keys, values, PAD), chars])
        if final_sigma:
            low = self.op(
                "Where",
                [
                    self.final_sigma(tokens, chars),
                    self.const("final", _strings([FINAL_SIGMA])),
                    low,
                ],
            )
        body = GraphBuilder(self.opset, prefix="sa_join_")
        i, cond, acc = "sa_join_i", "sa_join_cond", "sa_join_acc"
        column = body.op("Gather", [low, i], axis=2)
        acc_out = body.op("StringConcat", [acc, column])
        cond_out = body.op("Identity", [cond])
        graph = helper.make_graph(
            body.nodes,
            "join_characters",
            inputs=[
                _vi(i, TensorProto.INT64, []),
                _vi(cond, TensorProto.BOOL, []),
                _vi(acc, TensorProto.STRING, None),
            ],
            outputs=[_vi(cond_out, TensorProto.BOOL, []), _vi(acc_out, TensorProto.STRING, None)],
            initializer=body.initializers,
        )
        trips = self.op("Squeeze", [self.shape_part(chars, 2, 3), self.i64("axes", [0])])
        start = self.blanks([self.op("Shape", [tokens])])
        return self.op("Loop", [trips, "", start], TOKEN_KEYS, body=graph)

    def final_sigma(self, tokens: str, chars: str) -> str:
        """Bool [batch, width, chars]: a capital sigma that Python lower-cases to "ς"."""
        keys, classes = sigma_context_table()
        cls = self.lookup(chars, [*keys, PAD], [*classes, _IGNORABLE], _OTHER)
        start = self.op(
            "ConstantOfShape",
            [self.op("Shape", [tokens])],
            value=helper.make_tensor("false", TensorProto.BOOL, [1], [False]),
        )
        before = self._scan_cased(cls, start, reverse=False)
        after = self._scan_cased(cls, start, reverse=True)
        sigma = self.op("Cast", [self.lookup(chars, [CAPITAL_SIGMA], [1], 0)], to=TensorProto.BOOL)
        return self.op("And", [self.op("And", [sigma, before]), self.op("Not", [after])])

    def _scan_cased(self, cls: str, start: str, reverse: bool) -> str:
        """Per character: is the nearest non-case-ignorable character before (after) it cased?"""
        tag = "after" if reverse else "before"
        body = GraphBuilder(self.opset, prefix=f"sa_{tag}_")
        seen, c = f"sa_{tag}_seen", f"sa_{tag}_class"
        relevant = body.op(
            "Not", [body.op("Equal", [c, body.const("ign", np.array(_IGNORABLE, np.int64))])]
        )
        cased = body.op("Equal", [c, body.const("cased", np.array(_CASED, np.int64))])
        new = body.op(
            "Or",
            [
                body.op("And", [relevant, cased]),
                body.op("And", [body.op("Not", [relevant]), seen]),
            ],
        )
        out = body.op("Identity", [seen])
        graph = helper.make_graph(
            body.nodes,
            f"cased_{tag}",
            inputs=[_vi(seen, TensorProto.BOOL, None), _vi(c, TensorProto.INT64, None)],
            outputs=[_vi(new, TensorProto.BOOL, None), _vi(out, TensorProto.BOOL, None)],
            initializer=body.initializers,
        )
        attrs: dict[str, Any] = {
            "num_scan_inputs": 1,
            "scan_input_axes": [2],
            "scan_output_axes": [2],
        }
        if reverse:
            attrs |= {"scan_input_directions": [1], "scan_output_directions": [1]}
        _, result = self.g.op("Scan", [start, cls], 2, body=graph, **attrs)
        return str(result)

    def char_ids(self, tokens: str, chars: str, alphabet: Sequence[str], width: int) -> str:
        """char_ids[batch, time, width]: characters of each token (case kept), 0-padded."""
        block = self.blanks([self.op("Shape", [tokens]), self.i64("width", [width])])
        fitted = self.op(
            "Slice",
            [
                self.op("Concat", [chars, block], axis=2),
                self.i64("zero", [0]),
                self.i64("width", [width]),
                self.i64("axis", [2]),
            ],
        )
        return self.lookup(
            fitted, [*alphabet, PAD], [*range(len(alphabet)), PAD_ID], UNK_ID, md.CHAR_IDS
        )


def check_supported(ckpt: Checkpoint) -> None:
    """Refuse, before any work, a checkpoint whose preprocessing has no exact ONNX form."""
    if ckpt.task not in md.TEXT_TASKS:
        raise ExportError(
            f"--with-tokenizer applies to text models ({', '.join(md.TEXT_TASKS)}); "
            f"a {ckpt.task} model takes numbers"
        )
    assert ckpt.tokenizer is not None
    re2_pattern(ckpt.tokenizer.pattern)


def _rename(nodes: Sequence[onnx.NodeProto], names: dict[str, str]) -> list[onnx.NodeProto]:
    out = []
    for node in nodes:
        node = copy.deepcopy(node)
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                seq[i] = names.get(name, name)
        out.append(node)
    return out


def build_standalone(
    ckpt: Checkpoint, core: onnx.ModelProto, top_k: int = DEFAULT_TOP_K
) -> onnx.ModelProto:
    """The standalone model: `text[batch]` string in, the id graph `core` inside.

    `core` is the verified id graph (fp32 or a variant) of `ckpt`, built at opset >= 20.
    """
    check_supported(ckpt)
    assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
    opset = next(o.version for o in core.opset_import if o.domain in ("", "ai.onnx"))
    if opset < STANDALONE_OPSET:
        raise ExportError(
            f"--with-tokenizer needs --opset {STANDALONE_OPSET} or later (StringConcat), "
            f"got {opset}"
        )
    task, tok, vocab = ckpt.task, ckpt.tokenizer, ckpt.vocabulary.tokens
    labels = list(ckpt.labels)
    b = _Builder(opset)
    f32, i64, s = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING

    tokens = b.split(TEXT, re2_pattern(tok.pattern), tok.max_length)
    present = b.lookup(tokens, [PAD], [0], 1)
    b.op("ReduceSum", [present, b.i64("axes", [1])], NUM_TOKENS, keepdims=0)
    b.op("Max", [NUM_TOKENS, b.i64("one", 1)], md.LENGTHS)
    alphabet = ckpt.task_config.get("char_vocabulary") or []
    chars = b.characters(tokens) if tok.lowercase or alphabet else ""
    keys = b.lower(tokens, chars, needs_final_sigma(vocab)) if tok.lowercase else tokens
    ids = b.lookup(keys, vocab, list(range(len(vocab))), UNK_ID)
    if task == "cloze":
        blank = b.lookup(tokens, [BLANK], [1], 0)
        b.op("ReduceSum", [blank, b.i64("axes", [1])], NUM_BLANKS, keepdims=0)
        b.op("ArgMax", [b.op("Cast", [blank], to=f32)], md.MASK_POSITIONS, axis=1, keepdims=0)
        mask_id = ckpt.vocabulary.id_of(Tokenizer(tok).normalize(MASK))
        ids = b.op(
            "Where",
            [b.op("Cast", [blank], to=TensorProto.BOOL), b.i64("mask_id", mask_id), ids],
        )
    b.op("Mul", [ids, present], md.INPUT_IDS)
    if alphabet:
        b.char_ids(tokens, chars, alphabet, int(ckpt.task_config.get("max_word_length", 20)))

    produced = {md.INPUT_IDS, md.LENGTHS, md.CHAR_IDS, md.MASK_POSITIONS}
    needed = {i.name for i in core.graph.input}
    if not needed <= produced:
        raise ExportError(
            f"the id graph takes inputs {sorted(needed - produced)} this wrapper lacks"
        )
    core_logits, core_probs = "core_logits", "core_probabilities"
    core_nodes = _rename(core.graph.node, {md.LOGITS: core_logits, md.PROBABILITIES: core_probs})

    post_start = len(b.g.nodes)  # everything after this reads the id graph's outputs
    zero = b.const("zero", np.array(0.0, np.float32))
    present_b = b.op("Cast", [present], to=TensorProto.BOOL)
    n = len(labels) if task != "cloze" else len(vocab)
    if task == "tag":
        keep = b.op("Unsqueeze", [present_b, b.i64("axes", [2])])
        best = b.op("ArgMax", [core_probs], axis=2, keepdims=0)
        tags = b.lookup(best, list(range(n)), labels, PAD)
        b.op("Where", [present_b, tags, b.const("empty", _strings([PAD]))], TAGS)
        b.op(
            "Where",
            [present_b, b.op("ReduceMax", [core_probs, b.i64("axes", [2])], keepdims=0), zero],
            CONFIDENCES,
        )
    else:
        valid = (
            b.op("Equal", [NUM_BLANKS, b.i64("one", 1)])
            if task == "cloze"
            else b.op("Greater", [NUM_TOKENS, b.i64("zero", 0)])
        )
        keep = b.op("Unsqueeze", [valid, b.i64("axes", [1])])
    b.op("Where", [keep, core_logits, zero], md.LOGITS)
    b.op("Where", [keep, core_probs, zero], md.PROBABILITIES)
    if task == "classify":
        best = b.op("ArgMax", [core_probs], axis=1, keepdims=0)
        label = b.lookup(best, list(range(n)), labels, PAD)
        b.op("Where", [valid, label, b.const("empty", _strings([PAD]))], LABEL)
    if task in ("classify", "tag"):
        b.op("Identity", [b.const("classes", _strings(labels))], CLASSES)
    k = 0
    if task == "cloze":
        excluded = np.zeros(len(vocab), dtype=bool)
        excluded[[PAD_ID, UNK_ID]] = True
        if MASK in ckpt.vocabulary:
            excluded[ckpt.vocabulary.id_of(MASK)] = True
        k = min(top_k, int((~excluded).sum()))
        if k < 1:
            raise ExportError("the cloze vocabulary has no word to propose")
        scores = b.op(
            "Where",
            [
                b.const("excluded", excluded),
                b.const("minus", np.array(-1.0, np.float32)),
                core_probs,
            ],
        )
        top, index = b.g.op("TopK", [scores, b.i64("k", [k])], 2, axis=1, largest=1, sorted=1)
        words = b.lookup(str(index), list(range(len(vocab))), vocab, PAD)
        b.op("Where", [keep, words, b.const("empty", _strings([PAD]))], WORDS)
        b.op("Where", [keep, str(top), zero], WORD_PROBABILITIES)

    batch, time = "batch", "time"
    if task == "classify":
        outputs = [
            _vi(LABEL, s, [batch]),
            _vi(md.PROBABILITIES, f32, [batch, n]),
            _vi(md.LOGITS, f32, [batch, n]),
            _vi(CLASSES, s, [n]),
            _vi(NUM_TOKENS, i64, [batch]),
        ]
    elif task == "tag":
        outputs = [
            _vi(TOKENS, s, [batch, time]),
            _vi(TAGS, s, [batch, time]),
            _vi(CONFIDENCES, f32, [batch, time]),
            _vi(md.PROBABILITIES, f32, [batch, time, n]),
            _vi(md.LOGITS, f32, [batch, time, n]),
            _vi(CLASSES, s, [n]),
            _vi(NUM_TOKENS, i64, [batch]),
        ]
    else:
        outputs = [
            _vi(WORDS, s, [batch, k]),
            _vi(WORD_PROBABILITIES, f32, [batch, k]),
            _vi(md.PROBABILITIES, f32, [batch, n]),
            _vi(md.LOGITS, f32, [batch, n]),
            _vi(NUM_TOKENS, i64, [batch]),
            _vi(NUM_BLANKS, i64, [batch]),
        ]
    pre_post = b.g.nodes
    names = {init.name for init in core.graph.initializer} | {
        o for node in core_nodes for o in node.output
    }
    clash = names & (
        {init.name for init in b.g.initializers} | {o for nd in pre_post for o in nd.output}
    )
    if clash:
        raise ExportError(
            f"internal: standalone names clash with the id graph: {sorted(clash)[:5]}"
        )
    graph = helper.make_graph(
        [*pre_post[:post_start], *core_nodes, *pre_post[post_start:]],
        f"bilstm_{task}_standalone",
        inputs=[_vi(TEXT, s, [batch])],
        outputs=outputs,
        initializer=[*core.graph.initializer, *b.g.initializers],
        value_info=b.value_info,
    )
    imports = {o.domain: o.version for o in core.opset_import}
    imports |= {"": opset, ML: max(imports.get(ML, 0), 2), MS: max(imports.get(MS, 0), 1)}
    imports.pop("ai.onnx", None)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(imports.items())],
        producer_name="bilstm",
    )
    model.ir_version = core.ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


# -- verification ---------------------------------------------------------------------------------

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
                exposed.graph.output.append(_vi(name, kind, None))
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
    got: dict[str, np.ndarray], r: int, text: str, enc: TextEncoder, task: str, final_sigma: bool
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
    expected_ids = enc.word_ids(
        [MASK if t == BLANK else t for t in toks] if task == "cloze" else toks
    )
    if ids[:n].tolist() != expected_ids or ids[n:].any():
        problems.append(f"ids {ids.tolist()} != {expected_ids}")
    if md.CHAR_IDS in got and not np.array_equal(got[md.CHAR_IDS][r], enc.char_ids(toks, len(ids))):
        problems.append("char_ids differ")
    if task == "cloze":
        blanks = [j for j, t in enumerate(toks) if t == BLANK]
        if int(got[NUM_BLANKS][r]) != len(blanks):
            problems.append(f"num_blanks {int(got[NUM_BLANKS][r])} != {len(blanks)}")
        elif len(blanks) == 1 and int(got[md.MASK_POSITIONS][r]) != blanks[0]:
            problems.append(f"mask position {int(got[md.MASK_POSITIONS][r])} != {blanks[0]}")
    return problems


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
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        _count(stats, runner(chunk), chunk, enc, task, runner.final_sigma)
    return stats


def _count(
    stats: dict[str, Any],
    got: dict[str, np.ndarray],
    texts: Sequence[str],
    enc: TextEncoder,
    task: str,
    final_sigma: bool,
) -> None:
    for r, text in enumerate(texts):
        stats["texts"] += 1
        stats["tokens"] += int(got[NUM_TOKENS][r])
        problems = _row_problems(got, r, text, enc, task, final_sigma)
        if problems:
            stats["mismatched_texts"] += 1
            if len(stats["examples"]) < 5:
                stats["examples"].append({"text": text, "problems": problems})


def _probe_texts(task: str) -> list[str]:
    if task != "cloze":
        return list(PROBE_TEXTS)
    blanks = ["the ___ was great", "___", "A ___, really!", "two ___ ___ blanks", "a___b ____"]
    return [*PROBE_TEXTS, *blanks]


def verify_standalone(
    ckpt: Checkpoint,
    standalone: onnx.ModelProto,
    core: onnx.ModelProto,
    tolerance: float,
    against_pytorch: bool = True,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Prove the standalone graph equals the Python runtime + id graph on real texts.

    Texts: the checkpoint's examples and `PROBE_TEXTS`, in batches of similar length. Token ids
    (and tokens, lower-cased keys, char ids, blanks) must be identical; `probabilities` and
    `logits` within `tolerance` of the id graph fed the Python runtime's ids and, with
    `against_pytorch`, of PyTorch; texts without tokens (or a cloze text without exactly one
    blank) must give zeros. Raises `ParityError`; returns the figures stored in the metadata.
    """
    from bilstm.export.verify import reference_outputs, text_encoder

    enc = text_encoder(ckpt)
    texts = [str(t) for t in ckpt.examples] + _probe_texts(ckpt.task)
    texts.sort(key=lambda t: len(enc.split(t)))
    runner = StandaloneRunner(standalone, threads=1)
    core_session = _session(core)
    core_names = [o.name for o in core_session.get_outputs()]
    ids: dict[str, Any] = {"texts": 0, "tokens": 0, "mismatched_texts": 0, "examples": []}
    figures: dict[str, float] = {}
    breaches: dict[str, float] = {}
    scored = 0
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        got = runner(chunk)
        _count(ids, got, chunk, enc, ckpt.task, runner.final_sigma)
        token_lists = [enc.split(t) for t in chunk]
        if ckpt.task == "cloze":
            rows = [i for i, t in enumerate(token_lists) if t.count(BLANK) == 1]
        else:
            rows = [i for i, t in enumerate(token_lists) if t]
        others = [i for i in range(len(chunk)) if i not in rows]
        if others and (got[md.PROBABILITIES][others].any() or got[md.LOGITS][others].any()):
            breaches["rows without tokens (or one blank) are not zero"] = 1.0
        if not rows:
            continue
        scored += len(rows)
        if ckpt.task == "cloze":
            feeds = enc.batch([[MASK if t == BLANK else t for t in token_lists[i]] for i in rows])
            positions = [token_lists[i].index(BLANK) for i in rows]
            feeds[md.MASK_POSITIONS] = np.array(positions, np.int64)
        else:
            feeds = enc.batch([token_lists[i] for i in rows])
        refs = {"id_graph": dict(zip(core_names, core_session.run(core_names, feeds), strict=True))}
        if against_pytorch:
            refs["pytorch"] = reference_outputs(ckpt, feeds)
        for ref_name, ref in refs.items():
            for output in (md.LOGITS, md.PROBABILITIES):
                mine, theirs = got[output][rows], ref[output]
                if ckpt.task == "tag":  # real positions only: the padded widths differ
                    lens = feeds[md.LENGTHS]
                    mine = np.concatenate([m[:n] for m, n in zip(mine, lens, strict=True)])
                    theirs = np.concatenate([t[:n] for t, n in zip(theirs, lens, strict=True)])
                key = f"{output}_max_abs_vs_{ref_name}"
                diff = float(np.abs(mine.astype(np.float64) - theirs).max(initial=0.0))
                figures[key] = max(figures.get(key, 0.0), diff)
        if ckpt.task == "classify":
            best = refs["id_graph"][md.PROBABILITIES].argmax(-1)
            if [str(x) for x in got[LABEL][rows]] != [ckpt.labels[i] for i in best]:
                breaches["label differs from the id graph's argmax"] = 1.0
    if ids["mismatched_texts"]:
        raise ParityError(
            f"the standalone graph's preprocessing differs from the Python runtime on "
            f"{ids['mismatched_texts']} of {ids['texts']} texts: {ids['examples'][:2]}"
        )
    breaches |= {k: v for k, v in figures.items() if v > tolerance}
    if breaches:
        raise ParityError(
            f"the standalone graph differs from the id graph beyond tolerance {tolerance:g}: "
            + "; ".join(f"{k}: {v:.3e}" for k, v in breaches.items())
        )
    return {
        "texts": ids["texts"],
        "tokens": ids["tokens"],
        "token_ids": "identical to the Python runtime",
        "scored_texts": scored,
        "tolerance": tolerance,
        **figures,
    }


def _session(model: onnx.ModelProto) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def describe(ckpt: Checkpoint, model: onnx.ModelProto) -> dict[str, Any]:
    """What the metadata records about the in-graph preprocessing."""
    assert ckpt.tokenizer is not None and ckpt.vocabulary is not None
    tokenexp = re2_pattern(ckpt.tokenizer.pattern)
    return {
        "input": TEXT,
        "outputs": [o.name for o in model.graph.output],
        "tokenexp_sha256": hashlib.sha256(tokenexp.encode()).hexdigest(),
        "lowercase": "python str.lower table" if ckpt.tokenizer.lowercase else None,
        "final_sigma": bool(ckpt.tokenizer.lowercase and needs_final_sigma(ckpt.vocabulary.tokens)),
        "top_k": next(
            (
                o.type.tensor_type.shape.dim[1].dim_value
                for o in model.graph.output
                if o.name == WORDS
            ),
            None,
        ),
        "python": sys.version.split()[0],
    }


# -- by-hand check on corpora ---------------------------------------------------------------------


def read_corpus(path: str) -> dict[str, list[str]]:
    """Texts of a corpus file: `.tsv` column 2; `.conllu` `# text = ` lines and FORMs joined by
    spaces; anything else one text per line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if path.endswith(".tsv"):
        rows = [ln.split("\t", 1)[1] for ln in lines if "\t" in ln]
        return {path: rows[1:] if lines and lines[0].startswith("label\t") else rows}
    if not path.endswith(".conllu"):
        return {path: lines}
    texts = [ln[len("# text = ") :] for ln in lines if ln.startswith("# text = ")]
    forms: list[str] = []
    sentence: list[str] = []
    for ln in [*lines, ""]:
        cols = ln.split("\t")
        if len(cols) == 10 and cols[0].isdigit():
            sentence.append(cols[1])
        elif not ln.strip() and sentence:
            forms.append(" ".join(sentence))
            sentence = []
    return {f"{path} (# text)": texts, f"{path} (FORMs)": forms}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bilstm.export.standalone MODEL.onnx CORPUS...`: ids of the graph vs Python."""
    import argparse
    import time

    from bilstm.runtime.metadata import METADATA_KEY, ModelMetadata
    from bilstm.runtime.vocab import Vocabulary

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model", help="a standalone .onnx (bilstm export --with-tokenizer)")
    parser.add_argument("corpora", nargs="+", help=".tsv, .conllu or plain text files")
    args = parser.parse_args(argv)
    model = onnx.load(args.model)
    meta = ModelMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta.tokenizer is not None
    chars = meta.task_config.get("char_vocabulary")
    enc = TextEncoder(
        Tokenizer(meta.tokenizer),
        Vocabulary(meta.vocabulary),
        Vocabulary(chars) if chars else None,
        int(meta.task_config.get("max_word_length", 20)),
    )
    runner = StandaloneRunner(model)
    failed = False
    for path in args.corpora:
        for name, texts in read_corpus(path).items():
            started = time.perf_counter()
            stats = compare_preprocessing(runner, enc, meta.task, texts)
            nonascii = sum(not t.isascii() for t in texts)
            print(
                f"{name}: {stats['texts']} texts ({nonascii} non-ASCII), {stats['tokens']} tokens, "
                f"{stats['mismatched_texts']} texts differ ({time.perf_counter() - started:.1f} s)"
            )
            for example in stats["examples"]:
                print("   ", example)
            failed |= bool(stats["mismatched_texts"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
