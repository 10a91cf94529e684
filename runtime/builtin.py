"""Models that ship inside the package, addressable by name (`bilstm-run sentiment ...`).

`SHIPPED` records what was measured on each shipped file (its dev metrics, and for an int8
file those of the fp32 model it was quantised from), so that `bilstm info` and the model
cards show accuracy next to precision; tests check the table against the files and the cards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bilstm.core.errors import ModelLoadError

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class Shipped:
    """One shipped model file and what was measured on it."""

    card: str
    """Its model card in `runtime/assets/`."""
    recipe: str
    """The script in `models/recipes/` that rebuilds it from the public data."""
    precision: str
    """fp32 or int8, as in the file's metadata (`export.precision`)."""
    dev: dict[str, float]
    """Dev metrics of this file (`bilstm eval NAME DEV`)."""
    fp32_dev: dict[str, float] | None = None
    """For an int8 file: the same metrics of the fp32 model it was quantised from."""
    smaller_than: str | None = None
    """A variant: the model it trades accuracy against speed or size with."""
    holdout: dict[str, float] | None = None
    """For a model whose training stopped early on a hold-out of train rather than on dev: the
    hold-out metrics, which the file's own training `dev_metrics` (and an int8 file's
    `fp32_dev_metrics`) hold; `dev` and `fp32_dev` are then untouched by any choice."""


SHIPPED: dict[str, Shipped] = {
    "sentiment": Shipped(
        card="sentiment.md",
        recipe="sentiment.sh",
        precision="fp32",
        dev={"accuracy": 0.808, "macro_f1": 0.802},
        holdout={"accuracy": 0.790, "macro_f1": 0.779},
    ),
    "sentiment-int8": Shipped(
        card="sentiment.md",
        recipe="sentiment.sh",
        precision="int8",
        dev={"accuracy": 0.809, "macro_f1": 0.803},
        fp32_dev={"accuracy": 0.808, "macro_f1": 0.802},
        smaller_than="sentiment",
        holdout={"accuracy": 0.790, "macro_f1": 0.779},
    ),
    "sentiment-fast": Shipped(
        card="sentiment.md",
        recipe="sentiment-fast.sh",
        precision="int8",
        dev={"accuracy": 0.804, "macro_f1": 0.800},
        fp32_dev={"accuracy": 0.804, "macro_f1": 0.800},
        smaller_than="sentiment",
        holdout={"accuracy": 0.795, "macro_f1": 0.789},
    ),
    "pos-en": Shipped(
        card="pos-en.md",
        recipe="pos-en.sh",
        precision="int8",
        dev={"accuracy": 0.954, "oov_accuracy": 0.825},
        fp32_dev={"accuracy": 0.954, "oov_accuracy": 0.827},
    ),
    "cloze-en": Shipped(
        card="cloze-en.md",
        recipe="cloze-en.sh",
        precision="int8",
        dev={"top1": 0.261, "top5": 0.442},
        fp32_dev={"top1": 0.262, "top5": 0.443},
    ),
    "elecdemand-h1": Shipped(
        card="elecdemand.md",
        recipe="elecdemand.sh",
        precision="fp32",
        dev={"mae": 0.031, "rmse": 0.042},
    ),
    "elecdemand-h48": Shipped(
        card="elecdemand.md",
        recipe="elecdemand.sh",
        precision="fp32",
        dev={"mae": 0.252, "rmse": 0.344},
    ),
}

ALIASES = {"pos-en-int8": "pos-en", "cloze-en-int8": "cloze-en"}
"""Names in the `NAME-int8` pattern for the text models that ship only as int8 (their fp32
files are 4x larger for no measured accuracy gain: see their model cards)."""


def builtin_models() -> dict[str, Path]:
    """Names of the shipped models and their files."""
    return {p.stem: p for p in sorted(ASSETS.glob("*.onnx"))}


def resolve_model(model: str | Path) -> Path:
    """A model path as given, or the file of the built-in model of that name (or alias)."""
    path = Path(model)
    if path.exists() or path.suffix == ".onnx" or len(path.parts) > 1:
        return path
    shipped = builtin_models()
    name = ALIASES.get(str(model), str(model))
    if name in shipped:
        return shipped[name]
    names = ", ".join([*shipped, *ALIASES]) or "none installed"
    raise ModelLoadError(
        f"{model}: no such model file, and not the name of a built-in model ({names})"
    )


def builtin_facts(path: Path) -> dict[str, Any] | None:
    """What `bilstm info` adds for a shipped file: name, card, recipe, measured dev metrics.

    None for any other file (a copy elsewhere is not known to be unchanged).
    """
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    for name, file in builtin_models().items():
        if file.resolve() == resolved and name in SHIPPED:
            facts = {k: v for k, v in asdict(SHIPPED[name]).items() if v is not None}
            aliases = [a for a, target in ALIASES.items() if target == name]
            return {
                "name": name,
                **({"aliases": aliases} if aliases else {}),
                **facts,
                "card": str(ASSETS / facts["card"]),
                "recipe": f"models/recipes/{facts['recipe']}",
            }
    return None
