"""Names of a standalone model's graph input and outputs, domains and opset (docs/model-file.md)."""

from __future__ import annotations

from bilstm.runtime import metadata as md

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
# Internal tensor, exposed only by `StandaloneRunner` for the parity checks.
TOKEN_KEYS = "token_keys"

PAD = ""
"""Padding string of the in-graph tokens; the patterns never match the empty string."""
