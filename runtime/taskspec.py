"""What a task adapter declares: its graph contract, the options that apply, and run options.

Each task module (`classify`, `tag`, `cloze`, `forecast`) defines one `TaskSpec` and one model
class (a `BiLSTM` subclass) that owns everything else about the task: input preparation,
predictions, `bilstm-run` records and their TSV columns, evaluation metrics and data-frame
columns. Front ends ask the model; none of them branches on the task name.
"""

from __future__ import annotations

from dataclasses import dataclass

from bilstm.runtime import metadata as md

# `bilstm-run` options that mean something for every model reading text lines.
TEXT_RUN_OPTIONS = frozenset(
    {"shard", "chunk_size", "on_error", "max_line_bytes", "max_delay_ms", "workers"}
)


@dataclass(frozen=True)
class TaskSpec:
    """The static facts of a task, readable without a loaded model (metadata checks, export)."""

    name: str
    """The metadata's `task` value."""
    inputs: tuple[str, ...]
    """Graph inputs of the id model (`char_ids` is added when the metadata has characters)."""
    outputs: tuple[str, ...]
    """Graph outputs; the last one is what predictions read."""
    output_axes: tuple[str, ...]
    """Axes of every output; the last is sized by the metadata (labels, vocabulary, horizon)."""
    text_input: bool
    """Lines of text in (tokenizer, vocabulary; standalone export possible); else windows."""
    needs_labels: bool
    """The metadata must list labels (one per output column)."""
    per_token: bool
    """Outputs have a time axis: padded positions are masked when outputs are compared."""
    variants: bool
    """int8/fp16 variants can be checked (probabilities out; forecasts are in data units)."""
    run_options: frozenset[str]
    """`bilstm-run` options that apply to this task (beyond the ones every model takes)."""


@dataclass(frozen=True)
class RunOptions:
    """How records are made: the per-task options of `bilstm-run` and the data-frame
    predictors, each read only by the task it applies to."""

    batch_size: int
    top_k: int = 5
    probabilities: bool = True
    tokenize: str = "spaces"
    rolling: bool = False
    anomalies: bool = False
    threshold: float = 3.0
    follow: bool = False
    """Forecast online: a forecast as each row arrives, checked when its actual comes."""
    max_text_bytes: int = 1 << 20
    """Data-frame values longer than this (UTF-8) get an error record (`value_records`)."""


def id_inputs(*extra: str) -> tuple[str, ...]:
    """The inputs of a text model: token ids and lengths, plus `extra`."""
    return (md.INPUT_IDS, md.LENGTHS, *extra)
