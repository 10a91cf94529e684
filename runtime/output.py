"""Result records and their output formats; atomic output files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

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
    from bilstm.core.atomic import atomic_path  # not for stdout: its imports cost a cold start

    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


_CLASSIFY_KEYS = ("line", "label", "probabilities")
_MAX_CACHED_STRINGS = 1024


class _JsonLine:
    """`json.dumps(record, ensure_ascii=False)`, about twice as fast for classify records.

    Most of what `bilstm-run` writes is `{"line": int, "label": str | None, "probabilities":
    {str: float} | None}`, whose strings are the model's few labels. Their JSON forms are cached
    and the line is joined from them and the numbers' repr, which is what json writes for an
    int and a finite float. Any other record, or a value of another type (bool, NaN, a float
    subclass), is written by json itself, so the output is the same bytes either way.
    """

    def __init__(self) -> None:
        self._encode = json.JSONEncoder(ensure_ascii=False).encode
        self._quoted: dict[str, str] = {}

    def _quote(self, text: str) -> str:
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = self._encode(text)
            if len(self._quoted) < _MAX_CACHED_STRINGS:
                self._quoted[text] = quoted
        return quoted

    def __call__(self, record: dict[str, Any]) -> str:
        if tuple(record) != _CLASSIFY_KEYS:
            return self._encode(record)
        line, label, probs = record.values()
        if type(line) is not int or not (label is None or type(label) is str):
            return self._encode(record)
        if probs is None:
            probs_json = "null"
        elif type(probs) is dict:
            parts = []
            for key, value in probs.items():
                if type(key) is not str or type(value) is not float or not math.isfinite(value):
                    return self._encode(record)
                parts.append(f"{self._quote(key)}: {value!r}")
            probs_json = "{" + ", ".join(parts) + "}"
        else:
            return self._encode(record)
        label_json = "null" if label is None else self._quote(label)
        return f'{{"line": {line}, "label": {label_json}, "probabilities": {probs_json}}}'


class RecordWriter:
    """Writes result records as JSON lines or as TSV with a header row (`header=False`: no
    header, for a worker process rendering a chunk that the parent writes)."""

    def __init__(
        self, handle: TextIO, fmt: Format | str, columns: Sequence[str], header: bool = True
    ) -> None:
        self.handle = handle
        self.fmt = Format(fmt)
        self.columns = list(columns)
        self._rows: list[list[str]] = []
        self._json = _JsonLine()
        if self.fmt is Format.tsv and header:
            handle.write("\t".join(self.columns) + "\n")

    def write(self, record: dict[str, Any]) -> None:
        """Write one record (table rows are buffered until `flush`)."""
        self.write_many((record,))

    def write_many(self, records: Sequence[dict[str, Any]]) -> None:
        """Write records in order: one write call for JSONL and TSV (table rows are buffered
        until `flush`)."""
        if self.fmt is Format.table:
            self._rows.extend(tsv_cells(record, self.columns) for record in records)
        else:
            self.handle.write(self.lines(records))

    def lines(self, records: Sequence[dict[str, Any]]) -> str:
        """The JSONL or TSV lines of records, each ended by a newline (not for tables)."""
        if self.fmt is Format.jsonl:
            encode = self._json
            return "".join([encode(record) + "\n" for record in records])
        if self.fmt is Format.tsv:
            columns = self.columns
            return "".join(["\t".join(tsv_cells(r, columns)) + "\n" for r in records])
        raise ValueError("a table is drawn per chunk by flush(), it has no lines")

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
