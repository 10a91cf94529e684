"""Typed results of `BiLSTM.predict`, one class per task."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassPrediction:
    """The result for one text of a classification model."""

    label: str | None
    """Most probable label; None when the text has no tokens (empty or whitespace only)."""
    probabilities: dict[str, float] | None
    """Probability of every label, in the model's label order; None for an empty text."""
    num_tokens: int
    """Tokens the model saw (after truncation to the model's max length)."""
    truncated: bool = False
    """True when the text had more tokens than the model's max length (the rest was dropped)."""


@dataclass(frozen=True)
class TagPrediction:
    """Tags for the tokens of one sentence (empty lists for an empty sentence)."""

    tokens: list[str]
    """The tokens as written (after truncation to the model's max length)."""
    tags: list[str]
    """One tag per token."""
    confidences: list[float]
    """Probability of each chosen tag."""
    truncated: bool = False
    """True when the sentence had more tokens than the model's max length (the rest was
    dropped and has no tags)."""


@dataclass(frozen=True)
class ClozePrediction:
    """Candidate words for the `___` blank of one text, most probable first.

    A text without exactly one blank gets no candidates and `error` saying why; an empty
    (or whitespace-only) text gets no candidates and no error.
    """

    candidates: list[tuple[str, float]]
    """(word, probability) pairs, top-k; special tokens are never proposed."""
    error: str | None = None
    """Why this text could not be scored (no `___` blank, or several); None when it was."""

    @property
    def word(self) -> str | None:
        """The most probable word; None when there are no candidates."""
        return self.candidates[0][0] if self.candidates else None


@dataclass(frozen=True)
class Forecast:
    """Forecast for the `horizon` steps after one window, in the target's units."""

    values: list[float]
    """Predicted target values for steps 1..horizon after the window."""
    actual: list[float | None] | None = None
    """Observed values for those steps, where known (rolling mode)."""
    zscores: list[float | None] | None = None
    """(actual - forecast - residual mean) / residual std per step, from dev-set residuals."""
    anomalies: list[bool | None] | None = None
    """True where |zscore| exceeds the threshold."""
