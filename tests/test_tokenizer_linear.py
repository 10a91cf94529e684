"""Tokenizer patterns from model files match in linear time (RE2), exactly as Python's `re`.

A model file is untrusted: its `tokenizer.pattern` used to run on Python's backtracking `re`,
where `(a+)+b` took 12.8 s on 29 characters and doubled per character. Patterns other than
the built-in ones now run on RE2 after a translation that keeps Python's meaning (Unicode
classes, leftmost-first alternation, lazy repetitions); what RE2 cannot run is refused at load.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_hostile_models import _tokenizer, metadata_doc, needs_onnx, tiny_model

from bilstm.core.errors import MetadataError
from bilstm.core.tokenizer import (
    BUILTIN_PATTERNS,
    DEFAULT_PATTERN,
    WHITESPACE_PATTERN,
    PatternError,
    Tokenizer,
    TokenizerConfig,
    check_pattern,
)
from bilstm.runtime import BiLSTM
from bilstm.runtime.metadata import ModelMetadata

HOSTILE = r"(a+)+b"
LINE = "a" * 10_000 + "!"

# Non-ASCII letters and digits, casing, combining marks, apostrophes, emoji, every kind of
# space, control characters, underscores and blanks: where RE2's ASCII \w, \s, \d would differ.
UNICODE_TEXTS = [
    "",
    "   ",
    "A gorgeous, witty movie.",
    "It's NOT bad; it’s GREAT!!! don't y'all rock'n'roll 'quoted' o'",
    "Café déjà-vu naïve façade ÉCOLE Straße STRASSE İstanbul ΟΔΟΣ ǅemal ﬁne",
    "Москва Ёлка — 東京タワー 북한 ١٢٣ ٤٥ 𝐀𝐁𝐂 x² ½ Ⅻ ① ߀ ๓",
    "emoji 😀😀 👍🏽 🇫🇷 ok👌 a\u200db \u00a0nbsp\u2009thin\u3000ideo\u2028ls\x85nel",
    "snake_case __init__ ___ a___b ____ _ ‿ ⁀",
    "numbers 3.14 1,000 10% $5 #tag @user e-mail@example.com http://x.y/z?q=1",
    "combining e\u0301 a\u0308 \u0301x tab\tsep\x0bvt\x1cfs\x1dgs\x1ers\x1fus",
    "NUL\x00inside and \x7f del \ufeffbom \ufffd \U000e0001 \U0010ffff",
]

# Custom patterns (all fast on Python's re for these texts) whose meaning RE2 must keep.
CUSTOM_PATTERNS = [
    r"\w+|[^\w\s]",
    r"\d+|\D",
    r"[^\W\d_]+|\d+",
    r"(?i)[a-zß]+",
    r"(?i)k+|st",
    r"(?a)\w+|\S",
    r"(\w)(\w*)",
    r"\w+?'|\w+",
    r"[\s\S]",
    r"(?s:.)",
    r"\w{2,3}",
    r"x|xy+|\S",
]


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail instead of hanging: the backtracking engine would run longer than the universe."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover - not POSIX
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still matching after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_hostile_pattern_is_linear_on_a_long_line() -> None:
    tok = Tokenizer(TokenizerConfig(pattern=HOSTILE, max_length=8))
    with time_limit(10):
        start = time.perf_counter()
        assert tok.split(LINE) == []
        assert tok.split(LINE + "aab " + LINE) == ["aab"]
        elapsed = time.perf_counter() - start
    assert elapsed < 2, elapsed
    assert tok.engine == "re2"


@needs_onnx
def test_model_with_a_hostile_pattern_loads_and_predicts_quickly(tmp_path: Path) -> None:
    meta = metadata_doc(tokenizer=_tokenizer(pattern=HOSTILE))
    model = BiLSTM.load(tiny_model(tmp_path / "m.onnx", meta), device="cpu", threads=1)
    with time_limit(10):
        start = time.perf_counter()
        out = model.predict([LINE, "aab"])
        elapsed = time.perf_counter() - start
    assert elapsed < 2, elapsed
    assert out[0].label is None and out[1].num_tokens == 1


UNUSABLE = {
    "look-ahead": (r"\w+(?=\.)", "look-ahead"),
    "look-behind": (r"(?<=#)\w+", "look-behind"),
    "back-reference": (r"(\w)\1", "back-reference"),
    "anchor": (r"^\w+", "anchor"),
    "word boundary": (r"\bx\w*", "word boundary"),
    "conditional": (r"(a)?(?(1)b|c)", "conditional"),
    "huge repetition": (r"a{1001}", "1000"),
    "invalid": (r"(\w+", "not a valid regular expression"),
    "empty match": (r"\w*", "empty string"),
}


@pytest.mark.parametrize(("pattern", "why"), list(UNUSABLE.values()), ids=list(UNUSABLE))
def test_unusable_patterns_are_refused_with_the_reason(pattern: str, why: str) -> None:
    doc = metadata_doc(tokenizer=_tokenizer(pattern=pattern))
    with pytest.raises(MetadataError) as info:
        ModelMetadata.from_json(json.dumps(doc))
    message = str(info.value)
    assert "'tokenizer.pattern'" in message and repr(pattern) in message and why in message


@needs_onnx
def test_unusable_pattern_is_refused_at_load_naming_the_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tiny_model(tmp_path / "m.onnx", metadata_doc(tokenizer=_tokenizer(pattern=r"(?=a)a")))
    with pytest.raises(MetadataError, match="look-ahead") as info:
        BiLSTM.load(path, device="cpu", threads=1)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(PatternError):  # RE2 prints nothing of its own (log_errors is off)
        Tokenizer(TokenizerConfig(pattern=r"(?:a{1000}){1000}"))
    assert capfd.readouterr().err == ""


def test_pattern_too_large_for_re2_is_refused() -> None:
    with pytest.raises(PatternError, match="RE2 cannot compile"):
        check_pattern(r"[\w\s]{1000}[\w\s]{1000}[\w\s]{1000}")


@pytest.mark.parametrize("pattern", sorted(BUILTIN_PATTERNS))
def test_builtin_patterns_stay_on_re_and_re2_agrees_on_unicode(pattern: str) -> None:
    """Tokens stay byte-identical with Python's re; RE2 reads the translation the same way."""
    config = TokenizerConfig(pattern=pattern, max_length=10_000)
    python, linear = Tokenizer(config), Tokenizer(config, engine="re2")
    assert python.engine == "re"
    regex = re.compile(pattern)
    for text in UNICODE_TEXTS:
        assert python.split(text) == regex.findall(text)
        assert linear.split(text) == python.split(text), text


@pytest.mark.parametrize("pattern", CUSTOM_PATTERNS)
def test_custom_patterns_match_as_python_re(pattern: str) -> None:
    tok = Tokenizer(TokenizerConfig(pattern=pattern, max_length=10_000))
    assert tok.engine == "re2"
    regex = re.compile(pattern)
    for text in UNICODE_TEXTS:
        assert tok.split(text) == [m.group() for m in regex.finditer(text)], text


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=60))
def test_re2_equals_python_re_on_any_text(text: str) -> None:
    for pattern in (DEFAULT_PATTERN, WHITESPACE_PATTERN, r"(?i)[a-zß]+|\d+?|\W"):
        regex = re.compile(pattern)
        tok = Tokenizer(TokenizerConfig(pattern=pattern, max_length=1000), engine="re2")
        assert tok.split(text) == [m.group() for m in regex.finditer(text)]
