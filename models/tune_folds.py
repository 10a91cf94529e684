"""k-fold cross-validation files for `bilstm tune --folds K`: the training data, split K ways.

Each fold is a pair of files in the training file's own format (same suffix, so the readers
take them as they take the original): `fold-N/train<suffix>` (the other folds' units) and
`fold-N/dev<suffix>` (this fold's units). A unit is what may not be cut:

- `lines` (classify, cloze): one example per non-blank line; a `label<TAB>text` header is
  repeated in every file. Units are shuffled with the seed, then dealt round-robin.
- `blocks` (tag): a sentence, i.e. lines up to a blank line (CoNLL-U comments included).
- `series` (forecast): rows of a CSV in time order. Shuffling would leak the future into the
  past, so the folds chain forward (as scikit-learn's TimeSeriesSplit): fold N trains on the
  first N blocks of K+1 and is scored on block N+1.

The splitters are a table keyed by task name (`UNITS`), the registry of this concern.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bilstm.core.atomic import atomic_path
from bilstm.core.errors import DataError

CLASSIFY_HEADER = "label\ttext"


@dataclass(frozen=True)
class Fold:
    """One fold's files."""

    number: int
    train: Path
    dev: Path


Split = Callable[[list[str], int, int], list[tuple[list[str], list[str]]]]
"""(lines, folds, seed) -> per fold (train lines, dev lines)."""


def _read(path: Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc}); fix the file before tuning") from None


def _deal(units: list[list[str]], folds: int, seed: int) -> list[list[list[str]]]:
    order = list(range(len(units)))
    random.Random(seed).shuffle(order)
    dealt: list[list[list[str]]] = [[] for _ in range(folds)]
    for position, index in enumerate(order):
        dealt[position % folds].append(units[index])
    return dealt


def _cross(
    dealt: list[list[list[str]]], header: list[str], joiner: list[str]
) -> list[tuple[list[str], list[str]]]:
    """Fold k: dev = the units dealt to k, train = all the others."""
    out = []
    for k in range(len(dealt)):
        train = [u for j, part in enumerate(dealt) if j != k for u in part]
        out.append((_join(header, train, joiner), _join(header, dealt[k], joiner)))
    return out


def _join(header: list[str], units: list[list[str]], joiner: list[str]) -> list[str]:
    lines = list(header)
    for unit in units:
        lines.extend(unit)
        lines.extend(joiner)
    return lines


def split_lines(lines: list[str], folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    header = [lines[0]] if lines and lines[0].strip().lower() == CLASSIFY_HEADER else []
    units = [[line] for line in lines[len(header) :] if line.strip()]
    _enough(len(units), folds, "non-blank lines")
    return _cross(_deal(units, folds, seed), header, [])


def split_blocks(lines: list[str], folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    units: list[list[str]] = []
    block: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            block.append(line)
        elif block:
            units.append(block)
            block = []
    _enough(len(units), folds, "sentences (blocks between blank lines)")
    return _cross(_deal(units, folds, seed), [], [""])


def split_series(lines: list[str], folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    header, rows = lines[:1], [line for line in lines[1:] if line.strip()]
    _enough(len(rows), folds + 1, "rows")
    bounds = [round(i * len(rows) / (folds + 1)) for i in range(folds + 2)]
    return [
        (header + rows[: bounds[k + 1]], header + rows[bounds[k + 1] : bounds[k + 2]])
        for k in range(folds)
    ]


def _enough(count: int, folds: int, what: str) -> None:
    if count < folds * 2:
        raise DataError(
            f"the training data has {count} {what}: too few for {folds} folds; "
            "give fewer --folds or more data"
        )


UNITS: dict[str, Split] = {
    "classify": split_lines,
    "cloze": split_lines,
    "tag": split_blocks,
    "forecast": split_series,
}
"""Task name -> how its training file is cut into folds."""


def write_folds(task: str, data: Path, folds: int, seed: int, folder: Path) -> list[Fold]:
    """Write the `folds` folds of `data` under `folder` (fold-1 ... fold-K); atomically per
    file, so a rerun after an interruption finds whole files (and rewrites the same ones)."""
    parts = UNITS[task](_read(data), folds, seed)
    suffix = "".join(Path(data).suffixes[-1:]) or ".txt"
    written = []
    for number, (train, dev) in enumerate(parts, start=1):
        where = folder / f"fold-{number}"
        where.mkdir(parents=True, exist_ok=True)
        fold = Fold(number, where / f"train{suffix}", where / f"dev{suffix}")
        for path, lines in ((fold.train, train), (fold.dev, dev)):
            with atomic_path(path) as tmp:
                tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(fold)
    return written
