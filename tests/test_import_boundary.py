"""The runtime must import without torch, onnx or the training side."""

from __future__ import annotations

import subprocess
import sys


def test_runtime_import_leaves_torch_out() -> None:
    code = (
        "import sys, bilstm.runtime, bilstm.runtime.cli;"
        "bad = [m for m in ('torch', 'onnx', 'onnxscript', 'bilstm.models', 'bilstm.export')"
        " if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_imports_neither_side() -> None:
    """`bilstm.core` is what training and inference share: it imports neither of them."""
    code = (
        "import sys, pkgutil, importlib, bilstm.core as core;"
        "[importlib.import_module('bilstm.core.' + m.name) for m in pkgutil.iter_modules("
        "core.__path__)];"
        "bad = [m for m in ('torch', 'onnx', 'bilstm.runtime', 'bilstm.models', 'bilstm.export')"
        " if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
