"""One error hierarchy for everything a user can cause.

Every message says what was received, what is allowed, and how to fix it. The CLI turns a
`BiLSTMError` into a one-line message and exit code 2 (`--debug` shows the traceback).
"""

from __future__ import annotations


class BiLSTMError(Exception):
    """Base class for errors caused by user input, files or settings."""


class ModelLoadError(BiLSTMError):
    """A model file is missing, unreadable, not ONNX, or not loadable by ONNX Runtime."""


class MetadataError(ModelLoadError):
    """A model's bilstm metadata is missing, malformed, or of an unknown schema version."""


class DeviceError(BiLSTMError):
    """The requested execution device (e.g. CUDA) cannot be honoured."""


class InputError(BiLSTMError):
    """Input data (text lines, tensors, CSV rows) cannot be processed."""


class DataError(InputError):
    """Training or evaluation data is malformed; the message names file, line and reason."""


class CheckpointError(BiLSTMError):
    """A training checkpoint is missing, malformed, unsafe, or of an unknown format version."""


class ExportError(BiLSTMError):
    """A checkpoint cannot be exported, or the exported graph breaks the model file contract."""


class ParityError(ExportError):
    """The exported model disagrees with the PyTorch model beyond the tolerance."""


class WorkerError(BiLSTMError):
    """A `--workers` process could not start, failed on a chunk, or died."""


class KerasImportError(InputError):
    """A Keras model (or its vocabulary or labels file) that `bilstm import keras` cannot map
    exactly."""


class TuneError(BiLSTMError):
    """`bilstm tune` could not produce a result (every trial failed, a changed resumed study)."""
