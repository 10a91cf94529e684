"""Split one `bilstm-run` job over machines (`--shard I/N`) and merge the outputs (`bilstm merge`).

Shard I of N scores the chunks (of `--chunk-size` lines) whose index modulo N is I; every
shard reads the whole input, so each needs the same file and the same --chunk-size, and the
records keep their line numbers in the file. `bilstm merge OUT SHARD...` then streams the
shard outputs (JSONL, each sorted by line) into one file in input order, and refuses a
duplicated or missing line.
"""

from __future__ import annotations

import heapq
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO, TypeVar

import typer

from bilstm.core.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`"I/N"` -> Shard(I, N); ValueError with the reason for anything else."""
    parts = text.strip().split("/")
    if len(parts) != 2 or not all(p.strip().isascii() and p.strip().isdigit() for p in parts):
        raise ValueError(f"expected I/N with whole numbers, e.g. 0/4, got {text!r}")
    index, count = (int(p) for p in parts)
    if count < 1:
        raise ValueError(f"the shard count N must be at least 1, got {text!r}")
    if index >= count:
        raise ValueError(
            f"the shard index I must be in 0..{count - 1} (shards are numbered from 0), "
            f"got {text!r}"
        )
    return Shard(index, count)


def select_chunks(chunks: Iterable[T], shard: Shard | None) -> Iterator[T]:
    """The chunks of `shard`: those whose 0-based index modulo N is I (all without a shard)."""
    for i, chunk in enumerate(chunks):
        if shard is None or i % shard.count == shard.index:
            yield chunk


def _numbered(path: Path, key: str) -> Iterator[tuple[int, str, str, int]]:
    """(record number, file name, raw JSON line, file line) of a sorted JSONL shard output."""
    previous = 0
    with path.open(encoding="utf-8", newline="\n") as handle:
        for at, raw in enumerate(handle, 1):
            text = raw.rstrip("\n")
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{path}:{at}: not a JSON record ({exc.msg}); merge reads the JSONL "
                    f"output of bilstm-run --shard (--format jsonl)"
                ) from None
            number = record.get(key) if isinstance(record, dict) else None
            if not isinstance(number, int) or isinstance(number, bool) or number < 1:
                raise InputError(f"{path}:{at}: the record has no positive integer {key!r}")
            if number <= previous:
                raise InputError(
                    f"{path}:{at}: {key} {number} comes after {key} {previous}; each input must "
                    f"be sorted by {key} (as bilstm-run writes it)"
                )
            previous = number
            yield number, str(path), text, at


def merge_jsonl(
    inputs: Sequence[Path], out: TextIO, key: str = "line", expect: int | None = None
) -> int:
    """Write the records of `inputs` to `out` in `key` order; returns how many were written.

    Each input must be sorted by `key`; together they must hold each number from 1 up exactly
    once (and up to `expect`, when given): a duplicate or a gap raises `InputError`. Streams
    (one record per input in memory); records are copied byte for byte.
    """
    for path in inputs:
        if not path.is_file():
            raise InputError(f"{path}: no such shard output file")
    streams = [_numbered(path, key) for path in inputs]
    last, last_file = 0, ""
    for number, name, text, at in heapq.merge(*streams):
        if number == last:
            raise InputError(
                f"{name}:{at}: {key} {number} is also in {last_file}; each {key} must come from "
                f"exactly one shard (were the shards run with different --shard or --chunk-size, "
                f"or one output given twice?)"
            )
        if number != last + 1:
            missing = f"{last + 1}" if number == last + 2 else f"{last + 1}..{number - 1}"
            raise InputError(
                f"{key} {missing} missing (next is {key} {number} in {name}); is a shard "
                f"output missing, or were the shards run with different --chunk-size?"
            )
        out.write(text + "\n")
        last, last_file = number, name
    if expect is not None and last != expect:
        raise InputError(
            f"the shards hold {key}s 1..{last} but {expect} were expected; is a shard output "
            f"missing?"
        )
    return last


def merge(
    output: Annotated[
        Path, typer.Argument(help="Merged JSONL output (written atomically); - for stdout.")
    ],
    inputs: Annotated[
        list[Path], typer.Argument(help="JSONL outputs of bilstm-run --shard I/N, any order.")
    ],
    lines: Annotated[
        int | None,
        typer.Option(min=0, help="Expected number of records (catches a missing last shard)."),
    ] = None,
    key: Annotated[str, typer.Option(help="Record field that numbers the records.")] = "line",
    force: Annotated[
        bool, typer.Option("--force", help="Replace OUT if it exists (it is kept otherwise).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Merge the JSONL outputs of `bilstm-run --shard I/N` into one file, in input order.

    Every input must be sorted by line (as bilstm-run writes it); the merge streams them and
    stops with an error (leaving no output file) on a line found twice or missing. OUT may not
    be one of the inputs (also through a link) nor a folder; an existing OUT is replaced only
    with --force.
    """
    from bilstm.core.atomic import atomic_path
    from bilstm.core.outpaths import check_output_file
    from bilstm.runtime.cli import user_errors

    with user_errors(debug):
        if str(output) == "-":
            merge_jsonl(inputs, sys.stdout, key, lines)
            sys.stdout.flush()
            return
        check_output_file(output, inputs, force=force, flag="OUT")
        with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as fh:
            count = merge_jsonl(inputs, fh, key, lines)
        typer.echo(f"{count} records from {len(inputs)} files -> {output}", err=True)
