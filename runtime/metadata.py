"""The model file contract: the versioned JSON document inside every bilstm `.onnx`.

The document lives in the ONNX model's `metadata_props` under the key `METADATA_KEY` and is read
back with `InferenceSession.get_modelmeta().custom_metadata_map`. Every key is documented in
docs/model-file.md. Unknown schema versions and missing or mistyped keys are refused with the
key named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bilstm.core.errors import MetadataError
from bilstm.core.tokenizer import PatternError, TokenizerConfig, check_pattern
from bilstm.core.vocab import PAD, UNK

METADATA_KEY = "bilstm"
SCHEMA_VERSION = 1

# Stable graph I/O names (the runtime still checks them against the session).
INPUT_IDS = "input_ids"
LENGTHS = "lengths"
CHAR_IDS = "char_ids"
MASK_POSITIONS = "mask_positions"
FEATURES = "features"
LOGITS = "logits"
PROBABILITIES = "probabilities"
FORECAST = "forecast"
TEXT = "text"
"""The string input of standalone models (`bilstm export --with-tokenizer`)."""


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    name = f"{where}{key}"
    if key not in doc:
        raise MetadataError(f"model metadata is missing the key '{name}'")
    value = doc[key]
    # bool is an int subclass: never accept it where a number is asked for.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise MetadataError(
            f"model metadata key '{name}' has type {type(value).__name__}, "
            f"expected {' or '.join(t.__name__ for t in _as_tuple(kind))}"
        )
    return value


def _check_pattern(pattern: str) -> None:
    """The tokenizer pattern must be usable in linear time and never match the empty string
    (`tokenizer.check_pattern`: built-in patterns, or patterns RE2 can run exactly)."""
    try:
        check_pattern(pattern)
    except PatternError as exc:
        shown = pattern if len(pattern) <= 120 else pattern[:120] + "..."
        raise MetadataError(
            f"model metadata 'tokenizer.pattern' {shown!r} cannot be used: {exc}"
        ) from None


def _all_strings(values: list[Any]) -> bool:
    """True when every item is a str. The types are collected in C (`map`): a vocabulary
    of tens of thousands of words is checked at every load."""
    return set(map(type, values)) <= {str}


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


@dataclass
class ModelMetadata:
    """Everything the runtime needs to preprocess inputs and explain outputs."""

    task: str
    """A task name with an adapter in `bilstm.runtime.tasks` (classify, tag, forecast, cloze)."""
    labels: list[str]
    """Class names (classify) or tags (tag); index i is output column i. Empty otherwise."""
    vocabulary: list[str]
    """Tokens; index i is token id i. Starts with `<pad>`, `<unk>`. Empty for forecast."""
    tokenizer: TokenizerConfig | None
    """Tokenizer settings used in training (text tasks); None for forecast."""
    toolkit_version: str
    """bilstm version that wrote the file."""
    task_config: dict[str, Any] = field(default_factory=dict)
    """Task-specific preprocessing: character vocabulary (tag), columns, window, horizon and
    residual statistics (forecast), mask token (cloze)."""
    model: dict[str, Any] = field(default_factory=dict)
    """Architecture summary (cell, layers, sizes, pooling, ...), informative."""
    training: dict[str, Any] = field(default_factory=dict)
    """Training summary (data, epochs, dev metrics, ...), informative."""
    export: dict[str, Any] = field(default_factory=dict)
    """Export settings, parity figures and weight hash, informative."""
    schema_version: int = SCHEMA_VERSION
    standalone: bool = False
    """True when the graph takes raw text (`text[batch]` string) and tokenizes it itself."""

    def require(self, key: str, kind: type | tuple[type, ...]) -> Any:
        """A `task_config` value, type-checked; raises `MetadataError` naming the key."""
        return _get(self.task_config, key, kind, "task_config.")

    def to_json(self) -> str:
        """Serialise to the JSON document stored in the model file."""
        doc = {
            "schema_version": self.schema_version,
            "toolkit_version": self.toolkit_version,
            "task": self.task,
            "labels": self.labels,
            "vocabulary": self.vocabulary,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
            "task_config": self.task_config,
            "model": self.model,
            "training": self.training,
            "export": self.export,
        }
        if self.standalone:
            doc["standalone"] = True
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse and validate the JSON document; raises `MetadataError` naming the bad key."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MetadataError(
                f"model metadata '{METADATA_KEY}' is not valid JSON: {exc}"
            ) from exc
        except (RecursionError, ValueError) as exc:  # nesting too deep, numbers too long
            raise MetadataError(
                f"model metadata '{METADATA_KEY}' is not usable JSON ({type(exc).__name__})"
            ) from None
        if not isinstance(doc, dict):
            raise MetadataError(f"model metadata '{METADATA_KEY}' must be a JSON object")
        version = _get(doc, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise MetadataError(
                f"model metadata 'schema_version' is {version}, this bilstm reads version "
                f"{SCHEMA_VERSION}; upgrade bilstm (pip install -U bilstm) or re-export the model"
            )
        task = _get(doc, "task", str)
        from bilstm.runtime.tasks import spec  # here: the task modules import this one

        task_spec = spec(task)
        labels = _get(doc, "labels", list)
        if not _all_strings(labels):
            raise MetadataError("model metadata 'labels' must be a list of strings")
        if len(set(labels)) != len(labels):
            raise MetadataError("model metadata 'labels' has duplicate entries")
        if task_spec.needs_labels and not labels:
            raise MetadataError("model metadata 'labels' must not be empty for task " + task)
        vocab = _get(doc, "vocabulary", list)
        tokenizer: TokenizerConfig | None = None
        if task_spec.text_input:
            if len(vocab) < 2 or vocab[0] != PAD or vocab[1] != UNK:
                raise MetadataError(f"model metadata 'vocabulary' must start with {PAD!r}, {UNK!r}")
            if not _all_strings(vocab):
                raise MetadataError("model metadata 'vocabulary' must be a list of strings")
            if len(set(vocab)) != len(vocab):
                raise MetadataError("model metadata 'vocabulary' has duplicate entries")
            tok = _get(doc, "tokenizer", dict)
            _get(tok, "lowercase", bool, "tokenizer.")
            _get(tok, "pattern", str, "tokenizer.")
            max_length = _get(tok, "max_length", int, "tokenizer.")
            if max_length < 1:
                raise MetadataError("model metadata 'tokenizer.max_length' must be >= 1")
            tokenizer = TokenizerConfig.from_dict(tok)
            _check_pattern(tokenizer.pattern)
        task_config = doc.get("task_config", {})
        if not isinstance(task_config, dict):
            raise MetadataError("model metadata 'task_config' must be an object")
        return cls(
            task=task,
            labels=list(labels),
            vocabulary=list(vocab),
            tokenizer=tokenizer,
            task_config=task_config,
            toolkit_version=_get(doc, "toolkit_version", str),
            model=_get(doc, "model", dict),
            training=_get(doc, "training", dict),
            export=_get(doc, "export", dict),
            schema_version=version,
            standalone=_get(doc, "standalone", bool) if "standalone" in doc else False,
        )
