"""bilstm runtime: run exported bilstm `.onnx` models with ONNX Runtime (no torch).

from bilstm.runtime import BiLSTM
model = BiLSTM.load("sentiment")
model.predict(["a gorgeous, witty, seductive movie."])

The model classes are imported on first use: importing `bilstm.runtime.cli` (what the
`bilstm-run` script does first) must not import numpy before the command line is read
(see `bilstm.runtime.cli.run_main`).
"""

from typing import TYPE_CHECKING, Any

from bilstm.core.errors import (
    BiLSTMError,
    CheckpointError,
    DataError,
    DeviceError,
    ExportError,
    InputError,
    MetadataError,
    ModelLoadError,
    ParityError,
)

if TYPE_CHECKING:
    from bilstm.runtime.model import BiLSTM
    from bilstm.runtime.predictions import (
        ClassPrediction,
        ClozePrediction,
        Forecast,
        TagPrediction,
    )
    from bilstm.runtime.tasks import Classifier, ClozeModel, Forecaster, Tagger

_LAZY = {
    "BiLSTM": "bilstm.runtime.model",
    "ClassPrediction": "bilstm.runtime.predictions",
    "ClozePrediction": "bilstm.runtime.predictions",
    "Forecast": "bilstm.runtime.predictions",
    "TagPrediction": "bilstm.runtime.predictions",
    "Classifier": "bilstm.runtime.tasks",
    "ClozeModel": "bilstm.runtime.tasks",
    "Forecaster": "bilstm.runtime.tasks",
    "Tagger": "bilstm.runtime.tasks",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":  # looked up on demand: see bilstm.runtime.version
        from bilstm.runtime import version

        return str(version.__version__)
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once: later lookups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "__version__"})


__all__ = [
    "BiLSTM",
    "BiLSTMError",
    "CheckpointError",
    "ClassPrediction",
    "Classifier",
    "ClozeModel",
    "ClozePrediction",
    "DataError",
    "DeviceError",
    "ExportError",
    "Forecast",
    "Forecaster",
    "InputError",
    "MetadataError",
    "ModelLoadError",
    "ParityError",
    "TagPrediction",
    "Tagger",
    "__version__",
]
