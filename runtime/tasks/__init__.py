"""Task adapters: the one place per task (see `base`), and the registry of them.

Adding a task means writing one module here with a `TaskSpec` and a `BiLSTM` subclass, and
adding the class to `MODEL_CLASSES`; the CLI, the API, evaluation and the data-frame
predictors then work for it without a change (docs/architecture.md).
"""

from __future__ import annotations

from bilstm.core.errors import MetadataError
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.tasks.classify import Classifier
from bilstm.runtime.tasks.cloze import ClozeModel
from bilstm.runtime.tasks.forecast import Forecaster
from bilstm.runtime.tasks.tag import Tagger
from bilstm.runtime.tasks.text import TextModel
from bilstm.runtime.taskspec import RunOptions, TaskSpec

MODEL_CLASSES: dict[str, type[BiLSTM]] = {
    cls.SPEC.name: cls for cls in (Classifier, Tagger, Forecaster, ClozeModel)
}
"""The metadata's task name -> the model class that owns that task."""


def model_class(task: str) -> type[BiLSTM]:
    """The model class of a task name; `MetadataError` for a name no adapter owns."""
    try:
        return MODEL_CLASSES[task]
    except KeyError:
        raise MetadataError(
            f"model metadata 'task' is {task!r}, expected one of {tuple(MODEL_CLASSES)}"
        ) from None


def spec(task: str) -> TaskSpec:
    """The static facts of a task (graph inputs/outputs, options, masks)."""
    return model_class(task).SPEC


__all__ = [
    "MODEL_CLASSES",
    "Classifier",
    "ClozeModel",
    "Forecaster",
    "RunOptions",
    "Tagger",
    "TaskSpec",
    "TextModel",
    "model_class",
    "spec",
]
