"""Text -> tokens. The one tokenizer that training and inference share.

The rules are deliberately regular (one regular expression, then Unicode lower-casing of each
token) so that the same tokenisation can be written with ONNX string operators. Splitting before
lower-casing keeps a word whole even where lower-casing would add a combining mark ("İ").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

# Words (letters, digits, underscore) with inner apostrophes kept ("don't", "it's"), or any
# single character that is neither a word character nor whitespace (punctuation, symbols).
DEFAULT_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"
DEFAULT_MAX_LENGTH = 256
# Pre-tokenised input (tagging): tokens are separated by whitespace, as in CoNLL-U FORMs.
WHITESPACE_PATTERN = r"\S+"


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
    """Splits text into tokens according to a `TokenizerConfig`."""

    def __init__(self, config: TokenizerConfig | None = None) -> None:
        self.config = config or TokenizerConfig()
        self._regex = re.compile(self.config.pattern)

    def split(self, text: str) -> list[str]:
        """Tokens of `text` as written (case kept), truncated to `max_length`.

        Matching stops after `max_length` tokens: a huge line costs no more than a long one.
        """
        limit = self.config.max_length
        # findall is faster for ordinary lines; finditer bounds the work on huge ones. findall
        # returns groups, not matches, for patterns with capturing groups: those take finditer.
        if self._regex.groups == 0 and len(text) <= 64 * limit:
            return self._regex.findall(text)[:limit]
        return [m.group() for m in islice(self._regex.finditer(text), limit)]

    def normalize(self, token: str) -> str:
        """The vocabulary key of a token (lower-cased when `lowercase`)."""
        return token.lower() if self.config.lowercase else token

    def tokenize(self, text: str) -> list[str]:
        """Vocabulary keys of `text`: split, then normalise each token; empty text gives []."""
        tokens = self.split(text)
        return [t.lower() for t in tokens] if self.config.lowercase else tokens
