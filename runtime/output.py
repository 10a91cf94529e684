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
from bilstm.runtime.records import tsv_cells


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
    """Writes result records as JSON lines or as TSV with a header row."""

    def __init__(self, handle: TextIO, fmt: Format, columns: Sequence[str]) -> None:
        self.handle = handle
        self.fmt = Format(fmt)
        self.columns = list(columns)
        if self.fmt is Format.tsv:
            handle.write("\t".join(self.columns) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        """Write one record."""
        if self.fmt is Format.jsonl:
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.handle.write("\t".join(tsv_cells(record, self.columns)) + "\n")
