r"""Text -> tokens. The one tokenizer that training and inference share.

The rules are deliberately regular (one regular expression, then Unicode lower-casing of each
token) so that the same tokenisation can be written with ONNX string operators. Splitting before
lower-casing keeps a word whole even where lower-casing would add a combining mark ("İ").

Matching time is linear in the text for every pattern a model file can carry. The built-in
patterns (`BUILTIN_PATTERNS`) run on Python's `re`: they cannot backtrack more than a constant
per character (every repetition is over a non-empty part that the next part cannot start) and
`re` is the faster engine for them. Every other pattern runs on RE2 (`google-re2`), which
matches in linear time whatever the pattern: Python's backtracking `re` takes exponential time
on patterns such as `(a+)+b`. The pattern is translated first so that RE2 reads it exactly as
Python's `re` would (`re2_translation`): each character class, `\w`/`\s`/`\d`, `.` and
case-insensitive literal becomes the explicit set of code points Python's `re` matches with it
(RE2's own `\w` is ASCII-only), groups become non-capturing (a token is the whole match).
Constructs with no linear-time form are refused with the reason: look-arounds,
back-references, anchors and word boundaries, atomic groups, possessive repetitions and
repetition counts over 1000.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

if sys.version_info >= (3, 11):
    from re import _compiler as _sre_compile
    from re import _constants as _sre
    from re import _parser as _sre_parse
else:  # pragma: no cover - Python 3.10
    import sre_compile as _sre_compile
    import sre_constants as _sre
    import sre_parse as _sre_parse

# Words (letters, digits, underscore) with inner apostrophes kept ("don't", "it's"), or any
# single character that is neither a word character nor whitespace (punctuation, symbols).
DEFAULT_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"
DEFAULT_MAX_LENGTH = 256
# Pre-tokenised input (tagging): tokens are separated by whitespace, as in CoNLL-U FORMs.
WHITESPACE_PATTERN = r"\S+"
BUILTIN_PATTERNS = frozenset({DEFAULT_PATTERN, WHITESPACE_PATTERN})
"""Patterns that run on Python's `re`; literal strings, checked to be linear (see above)."""
ENGINES = ("re", "re2")
MAX_REPEAT_COUNT = 1000
"""RE2's limit on a counted repetition {n,m}."""


class PatternError(ValueError):
    """A tokenizer pattern that cannot be used (invalid, or with no linear-time form)."""


@dataclass(frozen=True)
class TokenizerConfig:
    """Settings of the text tokenizer, stored in every model file."""

    lowercase: bool = True
    """Lower-case text (Python `str.lower`, Unicode-aware) before splitting."""
    pattern: str = DEFAULT_PATTERN
    """Regular expression whose matches, left to right, are the tokens."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Keep at most this many tokens per text; the rest is dropped (truncation at the end)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerConfig:
        """Build from the JSON form written by `to_dict`."""
        return cls(
            lowercase=bool(data["lowercase"]),
            pattern=str(data["pattern"]),
            max_length=int(data["max_length"]),
        )


class Tokenizer:
    """Splits text into tokens according to a `TokenizerConfig`.

    `engine` is "re" (Python's `re`) or "re2"; None picks `re` for the built-in patterns and
    RE2 for every other one (see the module docstring). Raises `PatternError` for a pattern
    that cannot be used.
    """

    def __init__(self, config: TokenizerConfig | None = None, engine: str | None = None) -> None:
        self.config = config or TokenizerConfig()
        if engine is None:
            engine = "re" if self.config.pattern in BUILTIN_PATTERNS else "re2"
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        self._re2: Any = compile_re2(self.config.pattern) if engine == "re2" else None
        self._regex = re.compile(self.config.pattern) if engine == "re" else None
        # Lower-casing an ASCII text before splitting gives the same tokens as splitting and
        # then lower-casing each one for the built-in patterns (A-Z and a-z are all `\w`, and
        # neither pattern tells them apart), in one C call per text instead of one per token.
        self._lower_ascii_first = (
            self.config.lowercase and engine == "re" and self.config.pattern in BUILTIN_PATTERNS
        )
        # Neither built-in pattern matches whitespace, so their tokens never span a line end:
        # many texts joined by LF split as each one does, with LF itself as the separator.
        self._joined: re.Pattern[str] | None = None
        if engine == "re" and self.config.pattern in BUILTIN_PATTERNS:
            self._joined = re.compile(f"(?:{self.config.pattern})|\n")

    def split(self, text: str) -> list[str]:
        """Tokens of `text` as written (case kept), truncated to `max_length`.

        Matching stops after `max_length` tokens: a huge line costs no more than a long one.
        """
        return self._split(text, self.config.max_length)

    def split_checked(self, text: str) -> tuple[list[str], bool]:
        """`split(text)` and whether it dropped tokens (the text has over `max_length`)."""
        limit = self.config.max_length
        tokens = self._split(text, limit + 1)
        if len(tokens) > limit:
            return tokens[:limit], True
        return tokens, False

    def _split(self, text: str, limit: int) -> list[str]:
        regex = self._regex
        if regex is None:
            # RE2 on the UTF-8 bytes: match spans come back in bytes, no offset mapping.
            data = text.encode("utf-8", "surrogatepass")
            return [
                m.group().decode("utf-8", "surrogatepass")
                for m in islice(self._re2.finditer(data), limit)
            ]
        # findall is faster for ordinary lines; finditer bounds the work on huge ones. findall
        # returns groups, not matches, for patterns with capturing groups: those take finditer.
        if regex.groups == 0 and len(text) <= 64 * limit:
            return regex.findall(text)[:limit]
        return [m.group() for m in islice(regex.finditer(text), limit)]

    def keys_checked(self, text: str) -> tuple[list[str], bool]:
        """Vocabulary keys of `text` (`tokenize`), cut at `max_length`, and whether that
        dropped tokens: what a model that needs no case-kept tokens (a classifier) reads."""
        limit = self.config.max_length
        if self._lower_ascii_first and text.isascii():
            keys = self._split(text.lower(), limit + 1)
        else:
            keys = self._split(text, limit + 1)
            if self.config.lowercase:
                keys = [t.lower() for t in keys]
        if len(keys) > limit:
            return keys[:limit], True
        return keys, False

    def keys_joined(self, texts: Sequence[str]) -> tuple[list[str], list[int]] | None:
        """The vocabulary keys of many texts in one regex pass (None: this tokenizer cannot).

        Returns the keys of all texts with one "\n" item between texts (not cut at
        `max_length`), and the indices of the texts left out of that pass, whose keys the
        caller takes from `keys_checked`: a text that is not ASCII (lower-casing it whole
        could change its tokens), holds an LF, or is longer than the huge-line guard. It
        stands in the joined text as an empty text. Only the built-in patterns qualify:
        neither matches whitespace, so no token spans the LF between two texts.
        """
        if self._joined is None:
            return None
        limit = 64 * self.config.max_length
        joined = "\n".join(texts)
        others: list[int] = []
        if not (
            joined.isascii()
            and joined.count("\n") == len(texts) - 1
            and max(map(len, texts), default=0) <= limit
        ):
            others = [
                i for i, t in enumerate(texts) if not t.isascii() or "\n" in t or len(t) > limit
            ]
            if others:
                kept = list(texts)
                for i in others:
                    kept[i] = ""
                joined = "\n".join(kept)
        if self.config.lowercase:
            joined = joined.lower()
        return self._joined.findall(joined), others

    def normalize(self, token: str) -> str:
        """The vocabulary key of a token (lower-cased when `lowercase`)."""
        return token.lower() if self.config.lowercase else token

    def tokenize(self, text: str) -> list[str]:
        """Vocabulary keys of `text`: split, then normalise each token; empty text gives []."""
        tokens = self.split(text)
        return [t.lower() for t in tokens] if self.config.lowercase else tokens


# -- Python `re` syntax -> RE2 ------------------------------------------------------------------

_MAX_CP = 0x110000
_SURROGATES = (0xD800, 0xDFFF)
_REFUSED = {
    _sre.AT: "an anchor or word boundary (^ $ \\A \\Z \\b \\B)",
    _sre.ASSERT: "a look-ahead or look-behind",
    _sre.ASSERT_NOT: "a look-ahead or look-behind",
    _sre.GROUPREF: "a back-reference",
    _sre.GROUPREF_EXISTS: "a conditional group (?(n)...)",
}
for _name, _what in (
    ("ATOMIC_GROUP", "an atomic group"),
    ("POSSESSIVE_REPEAT", "a possessive repetition"),
):
    if hasattr(_sre, _name):  # Python 3.11+
        _REFUSED[getattr(_sre, _name)] = _what
# Items that match exactly one character: translated to the explicit code point set.
_ONE_CHARACTER = {_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN, _sre.CATEGORY}


@functools.cache
def _all_characters() -> str:
    """Every code point once, in order (surrogates included: Python's `re` sees them)."""
    import numpy as np  # a runtime dependency anyway; builds the 1.1M-character string fast

    codes = np.arange(_MAX_CP, dtype=np.uint32).tobytes()
    return codes.decode("utf-32-le", "surrogatepass")


def _cp(code: int) -> str:
    c = chr(code)
    return c if c.isascii() and c.isalnum() else f"\\x{{{code:X}}}"


_SETS: dict[str, str] = {}


def _character_set(item: Any, flags: int) -> str:
    """The RE2 class of exactly the code points Python's `re` matches with `item` under
    `flags` (found by letting `re` scan every code point; UTF-8 has no surrogates)."""
    key = repr((item, flags))
    if key not in _SETS:
        if len(_SETS) > 1024:
            _SETS.clear()
        _SETS[key] = _scan(item, flags)
    return _SETS[key]


def _scan(item: Any, flags: int) -> str:
    state = _sre_parse.State()
    state.flags = flags
    one = _sre_parse.SubPattern(state, [item])
    repeat: Any = (_sre.MAX_REPEAT, (1, _sre.MAXREPEAT, one))
    many = _sre_parse.SubPattern(state, [repeat])
    regex = _sre_compile.compile(many, flags)
    parts = []
    for m in regex.finditer(_all_characters()):
        a, b = m.start(), m.end() - 1
        for lo, hi in ((a, min(b, _SURROGATES[0] - 1)), (max(a, _SURROGATES[1] + 1), b)):
            if lo <= hi:
                parts.append(_cp(lo) if lo == hi else f"{_cp(lo)}-{_cp(hi)}")
    if not parts:
        return r"[^\x00-\x{10FFFF}]"  # matches nothing, as the Python item
    return "[" + "".join(parts) + "]"


def _translate(items: Any, flags: int) -> str:
    out = []
    for op, av in items:
        if op == _sre.LITERAL and not flags & re.IGNORECASE:
            out.append(_cp(av))
        elif op in _ONE_CHARACTER:
            out.append(_character_set((op, av), flags))
        elif op == _sre.BRANCH:
            out.append("(?:" + "|".join(_translate(b, flags) for b in av[1]) + ")")
        elif op == _sre.SUBPATTERN:  # groups do not capture: a token is the whole match
            _group, add_flags, del_flags, sub = av
            out.append("(?:" + _translate(sub, (flags | add_flags) & ~del_flags) + ")")
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            low, high, sub = av
            if low > MAX_REPEAT_COUNT or (high != _sre.MAXREPEAT and high > MAX_REPEAT_COUNT):
                raise PatternError(
                    f"it repeats a part more than {MAX_REPEAT_COUNT} times (RE2's limit)"
                )
            quant = {(0, _sre.MAXREPEAT): "*", (1, _sre.MAXREPEAT): "+", (0, 1): "?"}.get(
                (low, high), f"{{{low},}}" if high == _sre.MAXREPEAT else f"{{{low},{high}}}"
            )
            lazy = "?" if op == _sre.MIN_REPEAT else ""
            out.append("(?:" + _translate(sub, flags) + ")" + quant + lazy)
        else:
            raise PatternError(
                f"it uses {_REFUSED.get(op, str(op))}, which RE2 (the linear-time engine model "
                "patterns run on) cannot match exactly as Python's re does"
            )
    return "".join(out)


def re2_translation(pattern: str) -> str:
    """`pattern` (Python `re` syntax) as an RE2 pattern that matches exactly the same text.

    Raises `PatternError` with the reason when the pattern is invalid or has a construct
    RE2 cannot run (RE2 is what keeps matching linear in time).
    """
    try:
        parsed = _sre_parse.parse(pattern)
    except re.error as exc:
        raise PatternError(f"it is not a valid regular expression ({exc})") from None
    except (RecursionError, OverflowError, ValueError) as exc:
        raise PatternError(
            f"it is not a usable regular expression ({type(exc).__name__})"
        ) from None
    try:
        return _translate(parsed, parsed.state.flags)
    except RecursionError:
        raise PatternError("it is nested too deeply") from None


@functools.lru_cache(maxsize=32)
def compile_re2(pattern: str) -> Any:
    """An RE2 regex matching what `pattern` matches under Python's `re` (see
    `re2_translation`); raises `PatternError` with the reason."""
    import re2  # google-re2, only for non-built-in patterns

    translated = re2_translation(pattern)
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own message to stderr
    options.never_capture = True
    try:
        regex = re2.compile(translated, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args else str(exc)
        raise PatternError(f"RE2 cannot compile it ({reason})") from None
    if regex.fullmatch(b"") is not None:
        raise PatternError("it matches the empty string; every token must have a character")
    return regex


def check_pattern(pattern: str) -> None:
    """Raise `PatternError` with the reason if `pattern` cannot be a tokenizer pattern."""
    if pattern in BUILTIN_PATTERNS:
        return
    compile_re2(pattern)
