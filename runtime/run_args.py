"""The ordinary `bilstm-run` command line, parsed without importing a command-line library.

Importing Typer (and the click it vendors) and building the command from `run`'s signature
took about a sixth of a one-line `bilstm-run` before any model was read
(benchmarks/findings/coldstart.md). Most command lines are plain: MODEL, INPUT and a few
`--option value` pairs. `parse` reads exactly those and returns None for anything else
(--help, an unknown or repeated option, a value out of range or spelled in a way this
module does not accept, `--`, bundled short flags), which the caller then hands to the Typer
command: it stays the one place that explains usage errors and prints help, and both paths
end in `run_command.execute`.

The table below must agree with the Typer command (`bilstm.runtime.commands.run`): names,
spellings, types, lower bounds and defaults (`RunArgs`). tests/test_cli_startup.py checks it
against the click command Typer builds, and that both parsers give the same `RunArgs` and the
same set of given options on many command lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from bilstm.runtime.output import Format
from bilstm.runtime.run_command import OnError, RunArgs, Tokenize
from bilstm.runtime.session import Device, Optimization

E = TypeVar("E", bound=Enum)
_INT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


class _NotPlain(Exception):
    """The command line is not one this parser reads; Typer parses it instead."""


def _int_at_least(low: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not _INT.fullmatch(text) or int(text) < low:
            raise _NotPlain
        return int(text)

    return convert


def _float_at_least(low: float) -> Callable[[str], float]:
    def convert(text: str) -> float:
        if not _FLOAT.fullmatch(text) or float(text) < low:
            raise _NotPlain
        return float(text)

    return convert


def _choice(enum: type[E]) -> Callable[[str], E]:
    def convert(text: str) -> E:
        for member in enum:
            if member.value == text:
                return member
        raise _NotPlain

    return convert


def _path(text: str) -> Path:
    return Path(text)


def _shard(text: str) -> str:
    from bilstm.runtime.sharding import parse_shard

    try:
        parse_shard(text)
    except ValueError:
        raise _NotPlain from None  # Typer reports it as a usage error of --shard
    return text


VALUE_OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--output": ("output", _path),
    "-o": ("output", _path),
    "--format": ("fmt", _choice(Format)),
    "-f": ("fmt", _choice(Format)),
    "--top-k": ("top_k", _int_at_least(1)),
    "--tokenize": ("tokenize", _choice(Tokenize)),
    "--threshold": ("threshold", _float_at_least(0.0)),
    "--batch-size": ("batch_size", _int_at_least(1)),
    "--chunk-size": ("chunk_size", _int_at_least(1)),
    "--shard": ("shard", _shard),
    "--on-error": ("on_error", _choice(OnError)),
    "--max-line-bytes": ("max_line_bytes", _int_at_least(1)),
    "--max-delay-ms": ("max_delay_ms", _float_at_least(0.0)),
    "--device": ("device", _choice(Device)),
    "--device-id": ("device_id", _int_at_least(0)),
    "--threads": ("threads", _int_at_least(1)),
    "--workers": ("workers", _int_at_least(1)),
    "--optimization": ("optimization", _choice(Optimization)),
    "--warmup": ("warmup", _int_at_least(0)),
    "--profile": ("profile", _path),
    "--optimized-model": ("optimized_model", _path),
}
"""Options that take a value: spelling -> (parameter, conversion; `_NotPlain` if invalid)."""
FLAGS: dict[str, tuple[str, bool]] = {
    "--probabilities": ("probabilities", True),
    "--no-probabilities": ("probabilities", False),
    "--rolling": ("rolling", True),
    "--no-rolling": ("rolling", False),
    "--anomalies": ("anomalies", True),
    "--no-anomalies": ("anomalies", False),
    "--follow": ("follow", True),
    "--no-follow": ("follow", False),
    "--quiet": ("quiet", True),
    "-q": ("quiet", True),
    "--debug": ("debug", True),
}
"""Options without a value: spelling -> (parameter, value)."""
POSITIONAL = ("model", "input")


def _parse(argv: Sequence[str]) -> tuple[RunArgs, frozenset[str]]:
    values: dict[str, Any] = {}
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg:
            raise _NotPlain
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, attached = arg.partition("=")
        if name in FLAGS and not eq:
            param, value = FLAGS[name]
        elif name in VALUE_OPTIONS and (not eq or name.startswith("--")):
            param, convert = VALUE_OPTIONS[name]
            text = attached if eq else next(args, None)
            # A missing value, or one that looks like an option, is Typer's to judge.
            if not text or text.startswith("-"):
                raise _NotPlain
            value = convert(text)
        else:
            raise _NotPlain  # --help, --, an unknown option, -qf, -ofile, --quiet=1
        if param in values:
            raise _NotPlain  # repeated: Typer keeps the last one
        values[param] = value
    if len(positional) != len(POSITIONAL):
        raise _NotPlain
    values.update(zip(POSITIONAL, positional, strict=True))
    return RunArgs(**values), frozenset(values)


def parse(argv: Sequence[str]) -> tuple[RunArgs, frozenset[str]] | None:
    """`bilstm-run`'s arguments (after the program name) as `RunArgs` and the names of the
    parameters given on the command line; None when Typer must parse them."""
    try:
        return _parse(argv)
    except _NotPlain:
        return None
