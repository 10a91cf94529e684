"""Models that ship inside the package, addressable by name (`bilstm-run sentiment ...`)."""

from __future__ import annotations

from pathlib import Path

from bilstm.core.errors import ModelLoadError

ASSETS = Path(__file__).parent / "assets"


def builtin_models() -> dict[str, Path]:
    """Names of the shipped models and their files."""
    return {p.stem: p for p in sorted(ASSETS.glob("*.onnx"))}


def resolve_model(model: str | Path) -> Path:
    """A model path as given, or the file of the built-in model of that name."""
    path = Path(model)
    if path.exists() or path.suffix == ".onnx" or len(path.parts) > 1:
        return path
    shipped = builtin_models()
    if str(model) in shipped:
        return shipped[str(model)]
    names = ", ".join(shipped) or "none installed"
    raise ModelLoadError(
        f"{model}: no such model file, and not the name of a built-in model ({names})"
    )
