"""The export hooks of every task, by the metadata's task name: the one place export/ looks a
task up (docs/architecture.md). Each task's module (export/task_<name>.py) owns what differs:
the id graph's inputs and head, parity feeds and PyTorch references, the standalone graph's
task nodes, outputs and checks; the shared defaults are in export/task_base.py.
"""

from __future__ import annotations

from bilstm.core.errors import ExportError
from bilstm.export.task_base import ExportTask, TextTask
from bilstm.export.task_classify import ClassifyExport
from bilstm.export.task_cloze import ClozeExport
from bilstm.export.task_forecast import ForecastExport
from bilstm.export.task_tag import TagExport

EXPORT_TASKS: dict[str, ExportTask] = {
    hooks.name: hooks for hooks in (ClassifyExport(), TagExport(), ClozeExport(), ForecastExport())
}
"""Task name -> its export hooks; the same names as the runtime's `MODEL_CLASSES`."""


def export_task(name: str) -> ExportTask:
    """The export hooks of a task; `ExportError` for a name no module owns."""
    try:
        return EXPORT_TASKS[name]
    except KeyError:
        raise ExportError(
            f"no export for task {name!r}; expected one of {tuple(EXPORT_TASKS)}"
        ) from None


def text_task(name: str) -> TextTask:
    """The hooks of a text task (`check_supported` has refused the others by then)."""
    hooks = export_task(name)
    assert isinstance(hooks, TextTask), f"{name} has no standalone form"
    return hooks


__all__ = ["EXPORT_TASKS", "ExportTask", "TextTask", "export_task", "text_task"]
