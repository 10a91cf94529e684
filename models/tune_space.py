"""The search space of `bilstm tune`: the default one, and the JSON space file that replaces it.

A space maps `bilstm train` option names (underscores, as in `--config` files) to one of:

- `{"type": "int", "low": 1, "high": 3}` (optional `"step"`, or `"log": true`)
- `{"type": "float", "low": 0.0001, "high": 0.01, "log": true}` (optional `"step"`)
- `{"type": "categorical", "choices": [64, 128, 256]}`, or just the list `[64, 128, 256]`
- a plain value (`"cell": "lstm"`): fixed for every trial, not searched.

The file replaces the default space (`bilstm tune --show-space TASK` prints it to start from).
Options a task does not take (e.g. `pooling` for tag) are dropped from the default space, and
an error in a space file. Every value a dimension can produce is checked with the option's own
rules (type, range, choices) before any trial runs, so a bad space fails at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bilstm.core.errors import DataError, InputError
from bilstm.models.tasks import TASKS, only_for

if TYPE_CHECKING:
    import optuna

KINDS = ("int", "float", "categorical")

NOT_SEARCHABLE = frozenset(
    {"task", "data", "dev", "out", "config", "resume", "force", "debug", "device", "threads"}
)
"""`bilstm train` options that describe the run, not the model: never in a space."""

DEFAULT_SPACE: dict[str, Any] = {
    "embedding_dim": {"type": "categorical", "choices": [64, 128, 256]},
    "hidden_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "layers": {"type": "int", "low": 1, "high": 2},
    "cell": {"type": "categorical", "choices": ["lstm", "gru"]},
    "merge": {"type": "categorical", "choices": ["concat", "sum", "ave"]},
    "pooling": {"type": "categorical", "choices": ["max", "mean", "last", "attention"]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.05},
    "embedding_dropout": {"type": "float", "low": 0.0, "high": 0.4, "step": 0.05},
    "lr": {"type": "float", "low": 0.0003, "high": 0.01, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
}
"""What users of BiLSTM models usually tune; the ranges fit the built-in models' sizes."""


@dataclass(frozen=True)
class Dimension:
    """One searched option."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """The trial's value for this option."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name,
                int(self.low or 0),
                int(self.high or 0),
                step=int(self.step or 1),
                log=self.log,
            )
        return trial.suggest_float(
            self.name, float(self.low or 0), float(self.high or 0), step=self.step, log=self.log
        )

    def corners(self) -> list[Any]:
        """Values that span what the dimension can produce (for checking them up front)."""
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]

    def to_json(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"type": "categorical", "choices": list(self.choices)}
        doc: dict[str, Any] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.step is not None:
            doc["step"] = self.step
        if self.log:
            doc["log"] = True
        return doc


@dataclass(frozen=True)
class Space:
    """The searched dimensions and the fixed values of a space."""

    dimensions: tuple[Dimension, ...]
    fixed: dict[str, Any]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """A trial's option values: its suggestions plus the fixed values."""
        return {d.name: d.suggest(trial) for d in self.dimensions} | self.fixed

    def to_json(self) -> dict[str, Any]:
        """The space in the file format (what `--show-space` prints)."""
        return {d.name: d.to_json() for d in self.dimensions} | self.fixed


WORD_OPTIONS = ("embedding_dim", "embedding_dropout")
"""Options of the word embedding: only tasks that read words (`TaskInfo.text`) have one."""


def takers(name: str) -> set[str]:
    """The tasks that take option `name`."""
    limited = only_for()
    if name in WORD_OPTIONS:
        return {t for t, info in TASKS.items() if info.text}
    return set(limited.get(name, TASKS))


def default_space(task: str) -> dict[str, Any]:
    """The default space of `task`: `DEFAULT_SPACE` less the options `task` does not take."""
    return {k: v for k, v in DEFAULT_SPACE.items() if task in takers(k)}


def read_space_file(path: Path) -> dict[str, Any]:
    """The JSON object of a space file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the space file ({exc})") from None
    if not isinstance(doc, dict) or not doc:
        raise DataError(
            f"{path}: expected a non-empty JSON object of option names to ranges, e.g. "
            '{"hidden_size": [64, 128], "lr": {"type": "float", "low": 1e-4, "high": 1e-2, '
            '"log": true}}'
        )
    return doc


def parse_space(doc: dict[str, Any], task: str, where: str, options: set[str]) -> Space:
    """Check a space document (`where` names it in errors) against `task`'s options."""
    dims: list[Dimension] = []
    fixed: dict[str, Any] = {}
    for key, value in doc.items():
        name = key.replace("-", "_")
        prefix = f"{where}: {key!r}"
        if name not in options or name in NOT_SEARCHABLE:
            raise DataError(
                f"{prefix} is not a model or training option of `bilstm train` that can be "
                "searched; use option names such as hidden_size, lr, dropout"
            )
        if task not in takers(name):
            raise DataError(
                f"{prefix} applies to {'/'.join(sorted(takers(name)))}, not {task}; "
                "remove it from the space"
            )
        if isinstance(value, list):
            value = {"type": "categorical", "choices": value}
        if not isinstance(value, dict):
            fixed[name] = value
            continue
        dims.append(_dimension(name, value, prefix))
    if not dims:
        raise DataError(f"{where}: no searched option (only fixed values); add a range")
    return Space(tuple(dims), fixed)


def _dimension(name: str, spec: dict[str, Any], prefix: str) -> Dimension:
    kind = spec.get("type")
    if kind not in KINDS:
        raise DataError(f"{prefix}: 'type' must be one of {list(KINDS)}, got {kind!r}")
    allowed = (
        {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "step", "log"}
    )
    extra = sorted(set(spec) - allowed)
    if extra:
        raise DataError(
            f"{prefix}: unknown keys {extra} for a {kind} range (allowed {sorted(allowed)})"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise DataError(f"{prefix}: 'choices' must be a non-empty list")
        if not all(isinstance(c, str | int | float | bool) for c in choices):
            raise DataError(f"{prefix}: choices must be strings, numbers or booleans")
        return Dimension(name, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    low, high, step, log = (
        spec.get("low"),
        spec.get("high"),
        spec.get("step"),
        spec.get("log", False),
    )
    for label, v in (("low", low), ("high", high)):
        if not isinstance(v, number) or isinstance(v, bool):
            raise DataError(
                f"{prefix}: {label!r} must be {'an integer' if kind == 'int' else 'a number'}, "
                f"got {v!r}"
            )
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        raise DataError(
            f"{prefix}: 'step' must be a positive {'integer' if kind == 'int' else 'number'}"
        )
    if not isinstance(log, bool):
        raise DataError(f"{prefix}: 'log' must be true or false")
    low, high = (float(low), float(high)) if kind == "float" else (int(low), int(high))  # type: ignore[arg-type]
    if low > high:
        raise DataError(f"{prefix}: 'low' ({low}) is above 'high' ({high})")
    if log and (low <= 0 or step is not None):
        raise DataError(f"{prefix}: a log range needs low > 0 and no step")
    return Dimension(name, kind, low=low, high=high, step=step, log=log)


def check_values(space: Space, check: Any) -> None:
    """Run `check(name, value)` (the option's own rules) on every value a trial may draw."""
    for dim in space.dimensions:
        for value in dim.corners():
            check(dim.name, value)
    for name, value in space.fixed.items():
        check(name, value)


def space_from(task: str, path: Path | None, options: set[str]) -> Space:
    """The space of a run: the file at `path`, or `task`'s default space."""
    if path is None:
        return parse_space(default_space(task), task, "the default space", options)
    if not Path(path).is_file():
        raise InputError(f"--space {path}: no such file; give a JSON space file")
    return parse_space(read_space_file(path), task, str(path), options)
