"""Result records and their output formats; atomic output files."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from bilstm.runtime.atomic import atomic_path


class Format(str, Enum):
    """Output formats of `bilstm-run`."""

    jsonl = "jsonl"
    tsv = "tsv"


@contextlib.contextmanager
def atomic_output(path: Path | None) -> Iterator[TextIO]:
    """Write to stdout, or to `path` through a temp file renamed into place on success.

    If the block raises (including KeyboardInterrupt), the temp file is removed and an existing
    file at `path` is left untouched: a reader never sees a truncated result that looks whole.
    """
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


class RecordWriter:
    """Writes classification records as JSON lines or TSV."""

    def __init__(self, handle: TextIO, fmt: Format, labels: Sequence[str], probabilities: bool):
        self.handle = handle
        self.fmt = Format(fmt)
        self.labels = list(labels)
        self.with_probs = probabilities
        if self.fmt is Format.tsv:
            cols = ["line", "label"]
            if probabilities:
                cols += [f"p_{lab}" for lab in self.labels]
            handle.write("\t".join([*cols, "error"]) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        """Write one record: {"line", "label", "probabilities"} or {"line", "error"}."""
        if not self.with_probs:
            record = {k: v for k, v in record.items() if k != "probabilities"}
        if self.fmt is Format.jsonl:
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        probs = record.get("probabilities") or {}
        cells = [str(record["line"]), record.get("label") or ""]
        if self.with_probs:
            cells += [_num(probs.get(lab)) for lab in self.labels]
        error = (record.get("error") or "").replace("\t", " ")
        self.handle.write("\t".join([*cells, error]) + "\n")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
