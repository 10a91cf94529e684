"""Streaming input readers: one record per input line, decoded strictly, never all in memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple, TypeVar

from bilstm.core.errors import InputError

STDIN = "-"
DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_CHUNK_SIZE = 4096
# How long a line read from a live input (pipe, terminal, socket) may wait for more lines
# before what has arrived is scored (benchmarks/RESULTS.md, "Live input").
DEFAULT_MAX_DELAY_MS = 20.0
_READ_BYTES = 1 << 16
_FILE_READ_BYTES = 1 << 20
T = TypeVar("T")


class Line(NamedTuple):
    """One input line: its 1-based number and its text, or why it could not be decoded.

    A named tuple (immutable, as a frozen dataclass, and made in half the time): one is
    made per input line.
    """

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
    try:
        yield from _lines_of(handle, max_line_bytes)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def _lines_of(handle: BinaryIO, max_line_bytes: int) -> Iterator[Line]:
    """`iter_lines` on an open handle (left open): read in large blocks, split and decoded
    a block at a time (`LineSplitter`), never holding more than a block and one line's
    limit."""
    splitter = LineSplitter(max_line_bytes)
    while data := handle.read(_FILE_READ_BYTES):
        yield from splitter.feed(data)
    yield from splitter.finish()


def _lines_by_readline(handle: BinaryIO, max_line_bytes: int) -> Iterator[Line]:
    """`_lines_of` one `readline` at a time: the reference the block reader must match."""
    number = 0
    # One read holds at most the limit plus CR, LF and one byte that proves "too long".
    chunk = max_line_bytes + 3
    while raw := handle.readline(chunk):
        number += 1
        ended = raw.endswith(b"\n")
        if not ended and len(raw) == chunk:
            # Over the limit: skip the rest of the line in bounded pieces, never hold it.
            size = len(raw)
            while (more := handle.readline(1 << 20)) and not more.endswith(b"\n"):
                size += len(more)
            size += len(more)
            yield _over_long(number, size, max_line_bytes)
            continue
        yield _decoded(number, raw, ended, max_line_bytes)


def _over_long(number: int, size: int, max_line_bytes: int) -> Line:
    return Line(number, None, f"line is over --max-line-bytes {max_line_bytes} ({size} bytes)")


def _decoded(number: int, raw: bytes, ended: bool, max_line_bytes: int) -> Line:
    """One read line (with its LF when `ended`) as a `Line`: CR of CRLF and a BOM on line 1
    removed, strict UTF-8, the length limit applied."""
    content = raw[:-1] if ended else raw
    if content.endswith(b"\r"):
        content = content[:-1]
    if number == 1 and content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    if len(content) > max_line_bytes:
        return _over_long(number, len(content), max_line_bytes)
    try:
        return Line(number, content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Line(number, None, f"not valid UTF-8 (byte {exc.start}: {exc.reason})")


class LineSplitter:
    """Bytes as they arrive -> complete `Line`s, exactly as `iter_lines` reads them (same
    numbers, errors, BOM and CRLF handling), holding at most one line's limit of bytes."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self._limit = max_line_bytes + 3  # iter_lines' read size: limit, CR, LF, one more
        self._pending = bytearray()
        self._skipped: int | None = None  # bytes of an over-long line being skipped
        self.number = 0

    def feed(self, data: bytes) -> list[Line]:
        """The lines that `data` completes."""
        if self._skipped is None:
            end = data.rfind(b"\n")
            if end >= 0:
                body = data[: end + 1]
                if self._pending:
                    body = bytes(self._pending) + body
                whole = self._whole_lines(body)
                if whole is not None:
                    self._pending.clear()
                    self._keep(data[end + 1 :])
                    return whole
        out: list[Line] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            piece = data[start : end + 1]
            start = end + 1
            self.number += 1
            if self._skipped is not None:
                out.append(_over_long(self.number, self._skipped + len(piece), self.max_line_bytes))
                self._skipped = None
                continue
            if self._pending:
                piece = bytes(self._pending) + piece
                self._pending.clear()
            if len(piece) > self._limit:
                out.append(_over_long(self.number, len(piece), self.max_line_bytes))
            else:
                out.append(_decoded(self.number, piece, True, self.max_line_bytes))
        self._keep(data[start:])
        return out

    def _keep(self, rest: bytes) -> None:
        """Hold the start of a line whose end has not come yet (or count the bytes of an
        over-long one being skipped)."""
        if self._skipped is not None:
            self._skipped += len(rest)
        elif rest:
            self._pending += rest
            if len(self._pending) >= self._limit:  # over the limit whatever comes next
                self._skipped = len(self._pending)
                self._pending.clear()

    def _whole_lines(self, body: bytes) -> list[Line] | None:
        """The lines of `body` (complete lines, each ended by LF) decoded in one go, or None
        when one of them needs a closer look (invalid UTF-8, or possibly over the limit):
        then `feed` goes line by line. The same lines as `_decoded` gives: LF never occurs
        inside a UTF-8 sequence, so the block is valid exactly when every line is."""
        limit = self.max_line_bytes
        if len(body) > limit and max(map(len, body.split(b"\n"))) > limit:
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        lines = text.split("\n")
        lines.pop()  # the empty string after the last LF
        if "\r" in text:
            lines = [t[:-1] if t[-1:] == "\r" else t for t in lines]
        if self.number == 0 and lines[0][:1] == "\ufeff":
            lines[0] = lines[0][1:]
        first = self.number + 1
        self.number += len(lines)
        return list(map(Line, range(first, self.number + 1), lines))

    def finish(self) -> list[Line]:
        """The last line, when the input ends without a line end."""
        if self._skipped is not None:
            self.number += 1
            size, self._skipped = self._skipped, None
            return [_over_long(self.number, size, self.max_line_bytes)]
        if not self._pending:
            return []
        self.number += 1
        raw, self._pending = bytes(self._pending), bytearray()
        return [_decoded(self.number, raw, False, self.max_line_bytes)]


def _live_fd(handle: BinaryIO) -> int | None:
    """The file descriptor of `handle` when it is a live input (pipe, FIFO, terminal,
    socket: lines come as someone writes them), None for a regular file or no descriptor."""
    import stat

    try:
        fd = handle.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISBLK(mode):
        return None
    if sys.platform == "win32":  # select() takes only sockets there
        return None
    return fd


def is_live(source: str | Path) -> bool:
    """True when `source` (a path or `-`) is a pipe, FIFO, terminal or socket, not a file."""
    if str(source) == STDIN:
        return _live_fd(sys.stdin.buffer) is not None
    path = Path(source)
    try:
        import stat

        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISBLK(mode))


def line_batches(
    source: str | Path,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_delay_ms: float | None = DEFAULT_MAX_DELAY_MS,
) -> Iterator[list[Line]]:
    """`iter_lines(source)` in lists of at most `chunk_size` lines.

    A regular file is read in full chunks, as fast as it reads. A live input (pipe, terminal,
    socket; `tail -f FILE | ...`) also ends a list early once its first line has waited
    `max_delay_ms` for the chunk to fill (0: whenever no more input is ready), so that each
    line is scored within that delay of its arrival. None: always full chunks.
    """
    if max_delay_ms is None:
        yield from _full_chunks(iter_lines(source, max_line_bytes), chunk_size)
        return
    handle = open_input(source)
    try:
        fd = _live_fd(handle)
        if fd is None:
            yield from _full_chunks(_lines_of(handle, max_line_bytes), chunk_size)
        else:
            yield from _live_batches(fd, LineSplitter(max_line_bytes), chunk_size, max_delay_ms)
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def _full_chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    from itertools import islice

    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _live_batches(
    fd: int, splitter: LineSplitter, chunk_size: int, max_delay_ms: float
) -> Iterator[list[Line]]:
    """Lines of a live descriptor, in lists ended by a full chunk, the end of input, or the
    first waiting line's deadline (select() waits for input or the deadline, whichever first)."""
    import select
    import time

    delay = max(max_delay_ms, 0.0) / 1000.0
    pending: list[Line] = []
    deadline = 0.0
    ended = False
    while not ended:
        timeout = None if not pending else max(deadline - time.monotonic(), 0.0)
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:  # the first waiting line's time is up: score what has arrived
            yield pending
            pending = []
            continue
        data = os.read(fd, _READ_BYTES)
        ended = not data
        lines = splitter.feed(data) if data else splitter.finish()
        if lines and not pending:
            deadline = time.monotonic() + delay
        pending.extend(lines)
        while len(pending) >= chunk_size:  # the rest keeps its (earlier) deadline
            yield pending[:chunk_size]
            pending = pending[chunk_size:]
    if pending:
        yield pending


def deadline_batches(
    items: Iterable[T],
    size: int = DEFAULT_CHUNK_SIZE,
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS,
) -> Generator[list[T], None, None]:
    """Items of any iterable (a socket's lines, a queue drained by a generator) in lists of
    at most `size`, a list ending early once its first item has waited `max_delay_ms`.

    A daemon thread pulls the items (so that a blocking `next()` cannot hold back what has
    arrived); an exception it meets is raised here, after the items before it. Closing the
    generator stops the thread at its next item.
    """
    import queue
    import threading
    import time

    delay = max(max_delay_ms, 0.0) / 1000.0
    box: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=max(2 * size, 64))
    stop = threading.Event()
    item, done, failed = 0, 1, 2

    def pull() -> None:
        try:
            for value in items:
                while not stop.is_set():
                    try:
                        box.put((item, value), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((done, None))
        except Exception as exc:  # noqa: BLE001 (handed to the consumer, raised there)
            box.put((failed, exc))

    thread = threading.Thread(target=pull, name="bilstm-stream-reader", daemon=True)
    thread.start()
    pending: list[T] = []
    deadline = 0.0
    try:
        while True:
            try:
                if pending:
                    kind, value = box.get(timeout=max(deadline - time.monotonic(), 0.0))
                else:
                    kind, value = box.get()
            except queue.Empty:
                yield pending
                pending = []
                continue
            if kind == done:
                break
            if kind == failed:
                if pending:
                    yield pending
                    pending = []
                assert isinstance(value, BaseException)
                raise value
            if not pending:
                deadline = time.monotonic() + delay
            pending.append(value)  # type: ignore[arg-type]
            if len(pending) >= size:
                yield pending
                pending = []
        if pending:
            yield pending
    finally:
        stop.set()
