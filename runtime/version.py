"""The toolkit version, written into every model file."""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("bilstm")
except importlib.metadata.PackageNotFoundError:  # running from a source tree, not installed
    __version__ = "0.0.0+unknown"
