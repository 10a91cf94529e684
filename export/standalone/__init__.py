"""Standalone models: raw text in, labels out, with ONNX Runtime's built-in operators only.

`bilstm export CHECKPOINT OUT.onnx --with-tokenizer` wraps the id-based graph
of export/graph.py in the preprocessing and postprocessing that the Python runtime does, so
that any language with ONNX Runtime can use the file without bilstm:

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

Modules: `regex` (pattern -> RE2), `casing` (the lower-casing tables), `nodes` (the node
builder), `graph` (`build_standalone`, `describe`), `verify` (`verify_standalone`, the
`StandaloneRunner`), `names` (input/output names), `post` (what the postprocessing steps
share). What differs per task (the blank of cloze, labels, tags or words out, the outputs,
the probe texts and scored rows of the check) is in the task's export hooks, export/task_*.py.
A check of token-id identity over whole corpora is `python -m benchmarks.standalone_corpus`.

Exactness is checked at every export (`verify_standalone`): tokens, lower-cased keys and ids of
the checkpoint's examples plus `PROBE_TEXTS` must be identical to the Python runtime's, and
probabilities must match the id graph and PyTorch.
"""

from bilstm.export.standalone.casing import (
    CAPITAL_SIGMA,
    FINAL_SIGMA,
    lowercase_table,
    needs_final_sigma,
    sigma_context_table,
)
from bilstm.export.standalone.graph import build_standalone, check_supported, describe
from bilstm.export.standalone.names import (
    CLASSES,
    CONFIDENCES,
    DEFAULT_TOP_K,
    LABEL,
    ML,
    MS,
    NUM_BLANKS,
    NUM_TOKENS,
    PAD,
    STANDALONE_OPSET,
    TAGS,
    TEXT,
    TOKEN_KEYS,
    TOKENS,
    WORD_PROBABILITIES,
    WORDS,
)
from bilstm.export.standalone.regex import _PROVEN_PATTERNS, re2_pattern
from bilstm.export.standalone.verify import (
    INTERNALS,
    PROBE_TEXTS,
    StandaloneRunner,
    compare_preprocessing,
    verify_standalone,
)

__all__ = [
    "CAPITAL_SIGMA",
    "CLASSES",
    "CONFIDENCES",
    "DEFAULT_TOP_K",
    "FINAL_SIGMA",
    "INTERNALS",
    "LABEL",
    "ML",
    "MS",
    "NUM_BLANKS",
    "NUM_TOKENS",
    "PAD",
    "PROBE_TEXTS",
    "STANDALONE_OPSET",
    "TAGS",
    "TEXT",
    "TOKENS",
    "TOKEN_KEYS",
    "WORDS",
    "WORD_PROBABILITIES",
    "_PROVEN_PATTERNS",
    "StandaloneRunner",
    "build_standalone",
    "check_supported",
    "compare_preprocessing",
    "describe",
    "lowercase_table",
    "needs_final_sigma",
    "re2_pattern",
    "sigma_context_table",
    "verify_standalone",
]
