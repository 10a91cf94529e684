"""Streaming input readers: one record per input line, decoded strictly, never all in memory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bilstm.core.errors import InputError

STDIN = "-"
DEFAULT_MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True)
class Line:
    """One input line: its 1-based number and its text, or why it could not be decoded."""

    number: int
    text: str | None
    error: str | None = None


def open_input(source: str | Path) -> BinaryIO:
    """Binary handle on a file path or `-` (stdin); clear error when the file is missing."""
    if str(source) == STDIN:
        return sys.stdin.buffer
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such input file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a text file (or - for stdin)")
    return path.open("rb")


def iter_lines(source: str | Path, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[Line]:
    """Lines of a UTF-8 text file or stdin, without line ends (LF or CRLF) or a leading BOM.

    A line that is not valid UTF-8 or longer than `max_line_bytes` yields a `Line` with
    `error` set instead of text, so that the caller can keep one record per line.
    """
    handle = open_input(source)
    number = 0
    # One read holds at most the limit plus CR, LF and one byte that proves "too long".
    chunk = max_line_bytes + 3
    try:
        while raw := handle.readline(chunk):
            number += 1
            ended = raw.endswith(b"\n")
            if not ended and len(raw) == chunk:
                # Over the limit: skip the rest of the line in bounded pieces, never hold it.
                size = len(raw)
                while (more := handle.readline(1 << 20)) and not more.endswith(b"\n"):
                    size += len(more)
                size += len(more)
                yield Line(
                    number, None, f"line is over --max-line-bytes {max_line_bytes} ({size} bytes)"
                )
                continue
            content = raw[:-1] if ended else raw
            if content.endswith(b"\r"):
                content = content[:-1]
            if number == 1 and content.startswith(b"\xef\xbb\xbf"):
                content = content[3:]
            if len(content) > max_line_bytes:
                yield Line(
                    number,
                    None,
                    f"line is over --max-line-bytes {max_line_bytes} ({len(content)} bytes)",
                )
                continue
            try:
                yield Line(number, content.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield Line(number, None, f"not valid UTF-8 (byte {exc.start}: {exc.reason})")
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
