"""The registry of tasks: everything that differs between tasks is looked up here by name.

Importing this module is cheap (no torch): `bilstm train --help` and the option checks use
it before torch is loaded. Each task's training code lives in its own module (`module`),
imported only when that task trains; that module provides `train_from_options`, which reads
the data files and calls the task's public `train_*` function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from bilstm.models.config import TrainConfig
    from bilstm.models.options import TrainOptions

TEXT_OPTIONS = (
    "embedding_dim",
    "min_freq",
    "max_vocab",
    "max_length",
    "lowercase",
    "vectors",
    "skip_bad_lines",
)
"""`bilstm train` options of the tasks that read words (`TaskInfo.text`)."""

Settings = dict[str, Any]


def _no_settings(model: Settings, task_config: Settings) -> Settings:
    return {}


@dataclass(frozen=True)
class TaskInfo:
    """What the command line, the config and the checkpoint need to know about a task."""

    name: str
    module: str
    """The module that trains it (imports torch)."""
    text: bool
    """Reads words: vocabulary, tokenizer and an embedding table (all tasks but forecast)."""
    labelled: bool
    """The checkpoint's `labels` are the model's outputs, one per class or tag."""
    options: tuple[str, ...] = ()
    """`bilstm train` options that only this task takes (besides `TEXT_OPTIONS`)."""
    model_options: tuple[str, ...] = ()
    """Options copied into `ModelConfig` under their own name."""
    loop_options: tuple[str, ...] = ()
    """Task options of the training loop, which a resumed run may change."""
    saved_settings: Callable[[Settings, Settings], Settings] = _no_settings
    """Option values a saved run fixes, from its config.json 'model' and 'task_config'."""

    def train_from_options(
        self,
        opts: TrainOptions,
        model_cfg: dict[str, Any],
        train_cfg: TrainConfig,
        console: Console,
    ) -> None:
        """Read the data files named in `opts` and train (imports the task's module)."""
        module = importlib.import_module(self.module)
        module.train_from_options(opts, model_cfg, train_cfg, console)


def _tag_settings(model: Settings, task_config: Settings) -> Settings:
    return {"char_features": bool(model.get("char_vocab_size"))}


def _forecast_settings(model: Settings, task_config: Settings) -> Settings:
    columns = list(task_config.get("columns") or [])
    return {
        "target": task_config.get("target"),
        "features": ",".join(columns[1:]),
        "window": task_config.get("window"),
        "horizon": task_config.get("horizon"),
        "season": task_config.get("season"),
    }


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo(
            "classify",
            "bilstm.models.classify",
            text=True,
            labelled=True,
            # distillation and warm start (--teacher, --init-from) shape how a classifier is
            # trained, not what it is: they are not stored as task settings.
            options=(
                "pooling",
                "class_weights",
                "teacher",
                "distill_temperature",
                "distill_weight",
                "distill_augment",
                "augment_mask",
                "augment_swap",
                "augment_ngram",
                "init_from",
            ),
            model_options=("pooling",),
            loop_options=("class_weights",),
            saved_settings=lambda model, tc: {"pooling": model.get("pooling")},
        ),
        TaskInfo(
            "tag",
            "bilstm.models.tagging",
            text=True,
            labelled=True,
            options=("tag_column", "char_features", "word_dropout"),
            loop_options=("word_dropout",),
            saved_settings=_tag_settings,
        ),
        TaskInfo(
            "forecast",
            "bilstm.models.forecasting",
            text=False,
            labelled=False,
            options=("target", "features", "window", "horizon", "season"),
            saved_settings=_forecast_settings,
        ),
        TaskInfo("cloze", "bilstm.models.cloze", text=True, labelled=False),
    )
}
"""Every task, by name, in the order `bilstm train --help` lists them."""


def only_for() -> dict[str, set[str]]:
    """Options that only some tasks take -> those tasks (given elsewhere they are an error)."""
    found: dict[str, set[str]] = {}
    for info in TASKS.values():
        for name in info.options:
            found.setdefault(name, set()).add(info.name)
    for name in TEXT_OPTIONS:
        found[name] = {info.name for info in TASKS.values() if info.text}
    return found
