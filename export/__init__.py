"""bilstm.export: checkpoint -> self-describing ONNX, with graph checks and parity proof."""

from bilstm.export.exporter import ExportReport, export_checkpoint
from bilstm.export.module import ModuleExportReport, export_module
from bilstm.export.verify import FP32_TOLERANCE, ParityReport, check_parity

__all__ = [
    "FP32_TOLERANCE",
    "ExportReport",
    "ModuleExportReport",
    "ParityReport",
    "check_parity",
    "export_checkpoint",
    "export_module",
]
