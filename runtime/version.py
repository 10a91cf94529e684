"""The toolkit version, written into every model file."""

from __future__ import annotations

from functools import cache


@cache
def _installed_version() -> str:
    # importlib.metadata costs about 20 ms of import; the runtime's hot start never needs it
    import importlib.metadata

    try:
        return importlib.metadata.version("bilstm")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
