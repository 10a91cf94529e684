"""Text -> tokens. The one tokenizer that training and inference share.

The rules are deliberately regular (Unicode lower-casing plus one regular expression) so that
the same tokenisation can be written with ONNX string operators for standalone models.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

# Words (letters, digits, underscore) with inner apostrophes kept ("don't", "it's"), or any
# single character that is neither a word character nor whitespace (punctuation, symbols).
DEFAULT_PATTERN = r"\w+(?:['’]\w+)*|[^\w\s]"
DEFAULT_MAX_LENGTH = 256


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

    def tokenize(self, text: str) -> list[str]:
        """Tokens of `text`, truncated to `max_length`; empty text gives an empty list."""
        if self.config.lowercase:
            text = text.lower()
        tokens = self._regex.findall(text)
        return tokens[: self.config.max_length]
