"""bilstm runtime: run exported bilstm `.onnx` models with ONNX Runtime (no torch).

from bilstm.runtime import BiLSTM
model = BiLSTM.load("sentiment")
model.predict(["a gorgeous, witty, seductive movie."])
"""

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
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.predictions import ClassPrediction, ClozePrediction, Forecast, TagPrediction
from bilstm.runtime.tasks import Classifier, ClozeModel, Forecaster, Tagger


def __getattr__(name: str) -> str:
    if name == "__version__":  # looked up on demand: see bilstm.runtime.version
        from bilstm.runtime import version

        return str(version.__version__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
