"""Python `re` tokenizer patterns as RE2 patterns that match exactly the same text.

ONNX Runtime's `Tokenizer` compiles its `tokenexp` with RE2, whose `\\w`, `\\s` and `\\d` are
ASCII-only where Python's are Unicode: every class becomes the explicit code point ranges
Python's `re` gives it. RE2 has no look-around, back-references or Python's `$`; those are
refused, as is any pattern not proven to match the same under RE2's leftmost-longest option.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from bilstm.core.errors import ExportError

if sys.version_info >= (3, 11):
    from re import _constants as _sre
    from re import _parser as _sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_constants as _sre
    import sre_parse as _sre_parse

# Patterns whose leftmost-first (Python) and leftmost-longest (ONNX Runtime's RE2 options)
# matches are the same on every input: the alternatives start with disjoint characters and
# every repetition is greedy over a non-empty part that cannot run into what follows it.
# Literal strings on purpose: a new built-in pattern must be checked before it is listed.
_PROVEN_PATTERNS = frozenset({r"\w+(?:['’]\w+)*|[^\w\s]", r"\S+"})

MAX_CP = 0x110000
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


@functools.lru_cache(maxsize=1)
def _all_characters() -> str:
    return "".join(map(chr, range(MAX_CP)))


@functools.cache
def _category(escape: str, ascii_only: bool) -> np.ndarray:
    """Code points Python's `re` matches with `escape` (e.g. \\w), as a boolean mask."""
    mask = np.zeros(MAX_CP, dtype=bool)
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
    mask = np.zeros(MAX_CP, dtype=bool)
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
            mask = np.ones(MAX_CP, dtype=bool)
            mask[av] = False
            out.append(_class(mask, f"[^{chr(av)}]"))
        elif op == _sre.ANY:
            mask = np.ones(MAX_CP, dtype=bool)
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
