"""Scoring text chunks in several worker processes (`bilstm-run --workers N`,
`model.score_file(..., workers=N)`).

Each worker is a fresh Python process (spawned, never forked: a fork would copy ONNX
Runtime's thread pools half-alive) that opens its own session with its own intra-op thread
count and scores whole chunks. The parent reads the input in a thread and hands chunks out
through one queue (an idle worker takes the next); the results come back through another
and are yielded strictly in input order. At most `in_flight` chunks are read but not yet
yielded, so memory stays bounded whatever the input's size; a live input's chunks are
handed out as they arrive.

A worker that cannot load the model or fails on a chunk reports why and the parent raises
`WorkerError` with that reason; a worker that dies (killed, out of memory) is noticed within
a poll interval and reported with its exit code, never waited for. Workers ignore Ctrl-C
(the terminal sends it to the whole process group): the parent stops them, and they also
stop by themselves when the parent is gone.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bilstm.core.errors import BiLSTMError, WorkerError
from bilstm.runtime.model import ChunkResult

POLL_S = 0.2
"""How often a waiting parent checks that its workers are alive (and a worker, its parent)."""
STOP_GRACE_S = 5.0
"""How long workers get to exit after the end of input before they are terminated."""


@dataclass(frozen=True)
class ModelSource:
    """How a worker opens the model: what `BiLSTM.load` got, with the worker's threads."""

    path: str
    device: str = "cpu"
    device_id: int = 0
    threads: int | None = 1
    optimization: str = "all"
    tf32: bool = False
    warmup: int = 0
    """Warm-up runs before the first chunk (`bilstm-run --warmup`)."""


@dataclass(frozen=True)
class Rendering:
    """Records rendered to text in the worker (`RecordWriter.lines`), or None: the records
    themselves come back (the Python API, and `--format table`, which is drawn per chunk)."""

    fmt: str
    columns: tuple[str, ...]


def default_threads(workers: int) -> int:
    """Intra-op threads per worker when not given: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // workers)


def _pack(chunk: Sequence[Any]) -> list[tuple[Any, ...]]:
    """A chunk of `Line`s as plain tuples, which pickle faster than named tuples."""
    return list(map(tuple, chunk))


def _worker(
    source: ModelSource,
    opts: Any,
    rendering: Rendering | None,
    tasks: Any,
    results: Any,
    parent: int,
) -> None:
    """A worker's life: load the model, then score chunks until told to stop (None) or
    until the parent is gone. Each chunk's outcome, and a failed load, goes to `results`
    as (seq, kind, value)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    try:
        from bilstm.core.reader import Line
        from bilstm.runtime.model import BiLSTM

        model = BiLSTM.load(
            source.path,
            device=source.device,
            device_id=source.device_id,
            threads=source.threads,
            optimization=source.optimization,
            tf32=source.tf32,
        )
        model.warmup(source.warmup)
        render = None
        if rendering is not None:
            import io

            from bilstm.runtime.output import RecordWriter

            writer = RecordWriter(
                io.StringIO(), rendering.fmt, list(rendering.columns), header=False
            )
            render = writer.lines
    except BaseException as exc:  # noqa: BLE001 (reported to the parent, which raises it)
        results.put((-1, "failed", f"could not load the model: {_reason(exc)}"))
        return
    while True:
        try:
            job = tasks.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != parent:  # the parent died without stopping us
                return
            continue
        if job is None:
            return
        seq, rows = job
        try:
            lines = list(map(Line._make, rows))
            records = model.line_records(lines, opts)  # type: ignore[attr-defined]
            bad = [r for r in records if "error" in r]
            result = ChunkResult(
                size=len(rows),
                records=None if render else records,
                text=render(records) if render else None,
                errors=len(bad),
                first_error=bad[0] if bad else None,
            )
        except BaseException as exc:  # noqa: BLE001 (reported; the parent stops the run)
            results.put((seq, "failed", _reason(exc)))
            return
        results.put((seq, "done", result))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BiLSTMError):
        return str(exc)
    import traceback

    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
    return f"{type(exc).__name__}: {exc}{at}"


class WorkerPool:
    """`workers` processes scoring chunks of `Line`s with `model.line_records(chunk, opts)`.

    Use as a context manager; `map` yields a `ChunkResult` per chunk in input order.
    """

    def __init__(
        self,
        source: ModelSource,
        workers: int,
        opts: Any,
        rendering: Rendering | None = None,
        in_flight: int | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        import multiprocessing

        self.workers = workers
        self.in_flight = in_flight or 2 * workers
        ctx = multiprocessing.get_context("spawn")
        self._tasks: Any = ctx.Queue()
        self._results: Any = ctx.Queue()
        self._procs = [
            ctx.Process(
                target=_worker,
                args=(source, opts, rendering, self._tasks, self._results, os.getpid()),
                name=f"bilstm-worker-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        self._started = False

    def __enter__(self) -> WorkerPool:
        for proc in self._procs:
            proc.start()
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(clean=exc[0] is None)

    def close(self, clean: bool = False) -> None:
        """Stop the workers: after the end of input they are asked to exit and given
        `STOP_GRACE_S`; otherwise (error, Ctrl-C) they are terminated at once."""
        if not self._started:
            return
        self._started = False
        if clean:
            for _ in self._procs:
                self._tasks.put(None)
            for proc in self._procs:
                proc.join(STOP_GRACE_S)
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(STOP_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for q in (self._tasks, self._results):
            q.cancel_join_thread()  # what is left in a queue is not waited for
            q.close()

    def map(self, chunks: Iterable[Sequence[Any]]) -> Iterator[ChunkResult]:
        """Results of `chunks` in order, at most `in_flight` chunks read ahead."""
        room = threading.Semaphore(self.in_flight)
        stop = threading.Event()
        fed: queue.Queue[tuple[str, Any]] = queue.Queue()  # the reader's end or its error

        def read() -> None:
            count = 0
            try:
                for chunk in chunks:
                    while not room.acquire(timeout=POLL_S):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    self._tasks.put((count, _pack(chunk)))
                    count += 1
            except BaseException as exc:  # noqa: BLE001 (raised in the consuming thread)
                fed.put(("error", exc))
                return
            fed.put(("end", count))

        reader = threading.Thread(target=read, name="bilstm-chunk-reader", daemon=True)
        reader.start()
        try:
            yield from self._ordered(fed, room)
        finally:
            stop.set()

    def _ordered(
        self, fed: queue.Queue[tuple[str, Any]], room: threading.Semaphore
    ) -> Iterator[ChunkResult]:
        """Results by sequence number; the reader says how many there are when it ends."""
        waiting: dict[int, ChunkResult] = {}
        total: int | None = None
        following = 0
        while total is None or following < total:
            if following in waiting:
                result = waiting.pop(following)
                following += 1
                room.release()
                yield result
                continue
            if total is None:
                try:
                    kind, value = fed.get_nowait()
                except queue.Empty:
                    pass
                else:
                    if kind == "error":
                        raise value
                    total = value
                    continue
            message = self._next_result()
            if message is None:
                continue
            seq, kind, payload = message
            if kind == "failed":
                raise WorkerError(f"a worker process failed: {payload}")
            if kind == "done":
                waiting[seq] = payload

    def _next_result(self) -> tuple[int, str, Any] | None:
        """The next message of any worker, None after a quiet poll interval; `WorkerError`
        as soon as a worker has died (its own failure report first, when it sent one)."""
        try:
            message: tuple[int, str, Any] = self._results.get(timeout=POLL_S)
            return message
        except queue.Empty:
            pass
        for i, proc in enumerate(self._procs):
            if proc.is_alive():
                continue
            try:  # a worker that failed reports why before it exits: read that first
                message = self._results.get(timeout=POLL_S)
            except queue.Empty:
                raise WorkerError(_death(i, proc.exitcode)) from None
            return message
        return None


def _death(index: int, code: int | None) -> str:
    import signal

    how = f"exit code {code}"
    if code is not None and code < 0:
        try:
            how = f"signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"signal {-code}"
    return (
        f"worker process {index} died ({how}) while scoring; no output was written for the "
        "chunks it held. If it ran out of memory, use fewer --workers or a smaller --chunk-size"
    )


def scored_chunks(
    pool_factory: Callable[[], WorkerPool], chunks: Iterable[Sequence[Any]]
) -> Iterator[ChunkResult]:
    """`WorkerPool.map` inside the pool's lifetime: the workers stop when the caller stops
    iterating (end of input, an error, Ctrl-C, or a closed generator)."""
    with pool_factory() as pool:
        yield from pool.map(chunks)
