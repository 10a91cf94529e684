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
    table = "table"


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
        self._rows: list[list[str]] = []
        if self.fmt is Format.tsv:
            handle.write("\t".join(self.columns) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        """Write one record (table rows are buffered until `flush`)."""
        if self.fmt is Format.jsonl:
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif self.fmt is Format.tsv:
            self.handle.write("\t".join(tsv_cells(record, self.columns)) + "\n")
        else:
            self._rows.append(tsv_cells(record, self.columns))

    def flush(self) -> None:
        """Render buffered table rows (one table per input chunk, for people to read)."""
        if not self._rows:
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(*self.columns, show_lines=False)
        for row in self._rows:
            table.add_row(*row)
        Console(file=self.handle, width=160).print(table)
        self._rows.clear()
