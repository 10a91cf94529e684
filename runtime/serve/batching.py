"""Dynamic batching: concurrent requests for one model are queued and scored together.

A `Batcher` owns one model session's queue and one worker thread. Its collector task (on the
event loop) takes the oldest job, then waits at most `max_delay_s` from that job's arrival
for more jobs of the same kind (`Job.key`) until `max_batch` rows are gathered, and hands
the batch to the worker thread; while the thread scores, the loop keeps accepting and
queueing. Jobs whose key is None are scored alone (a model whose results would depend on
the batch, e.g. int8 with dynamic quantization, gets None keys).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The model's queue holds `max_queue_rows` rows already."""


class Draining(Exception):
    """The server is shutting down: queued work finishes, new work is refused."""


@dataclass
class Job:
    """One request's work: `rows` inputs, merged only with jobs of an equal, non-None key."""

    payload: Any
    rows: int
    key: Hashable | None
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)


Scorer = Callable[[Sequence[Job]], list[Any]]
"""Scores a batch of jobs (in the worker thread); one result, or an exception, per job."""


class Batcher:
    """The queue and worker thread of one model session."""

    def __init__(
        self,
        name: str,
        score: Scorer,
        max_batch: int,
        max_delay_s: float,
        max_queue_rows: int,
        observe: Callable[[int, float], None] | None = None,
        queue_gauge: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self._score = score
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue_rows = max_queue_rows
        self._observe = observe
        self._queue_gauge = queue_gauge
        self._queue: deque[Job] = deque()
        self._queued_rows = 0
        self._forming = 0  # rows of the batch that is waiting for more
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"bilstm-serve-{name}")
        self._closing = False
        self.busy = False

    @property
    def queued_rows(self) -> int:
        """Rows waiting: queued, or in the batch that waits for more (not yet scoring)."""
        return self._queued_rows + self._forming

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def submit(self, payload: Any, rows: int, key: Hashable | None) -> Any:
        """Queue a job and wait for its result (its exception is raised here)."""
        if self._closing:
            raise Draining("the server is shutting down")
        if self._queued_rows and self._queued_rows + rows > self.max_queue_rows:
            raise QueueFull(
                f"model {self.name!r} has {self._queued_rows} rows queued (--max-queue "
                f"{self.max_queue_rows}); retry later"
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(Job(payload, rows, key, future))
        self._set_queued(self._queued_rows + rows)
        assert self._wakeup is not None, "Batcher.start() was not called"
        self._wakeup.set()
        return await future

    def _set_queued(self, rows: int, forming: int | None = None) -> None:
        self._queued_rows = rows
        if forming is not None:
            self._forming = forming
        if self._queue_gauge is not None:
            self._queue_gauge(self.queued_rows)

    def _take(self, first: Job, batch: list[Job], rows: int) -> int:
        """Move queued jobs that fit and merge with `first` into `batch`; the rows now held."""
        if first.key is None:
            return rows
        kept: deque[Job] = deque()
        while self._queue:
            job = self._queue.popleft()
            if job.future.cancelled():
                self._set_queued(self._queued_rows - job.rows)
            elif job.key == first.key and rows + job.rows <= self.max_batch:
                batch.append(job)
                rows += job.rows
                self._set_queued(self._queued_rows - job.rows, rows)
            else:
                kept.append(job)
        self._queue = kept
        return rows

    async def _collect(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._queue.popleft()
            self._set_queued(self._queued_rows - first.rows, first.rows)
            if first.future.cancelled():
                self._set_queued(self._queued_rows, 0)
                continue
            batch = [first]
            rows = self._take(first, batch, first.rows)
            deadline = first.enqueued + self.max_delay_s
            while first.key is not None and rows < self.max_batch and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), left)
                except asyncio.TimeoutError:
                    rows = self._take(first, batch, rows)
                    break
                rows = self._take(first, batch, rows)
            self._set_queued(self._queued_rows, 0)
            start = time.perf_counter()
            self.busy = True
            try:
                results = await loop.run_in_executor(self._executor, self._score_all, batch)
            finally:
                self.busy = False
            if self._observe is not None:
                self._observe(rows, time.perf_counter() - start)
            for job, result in zip(batch, results, strict=True):
                if job.future.done():
                    continue  # the request timed out or its client went away
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _score_all(self, batch: Sequence[Job]) -> list[Any]:
        """Score the batch; if that fails as a whole, each job alone (one bad request does
        not fail the others)."""
        try:
            return self._score(batch)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if len(batch) == 1:
                return [exc]
        results: list[Any] = []
        for job in batch:
            try:
                results.extend(self._score([job]))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                results.append(exc)
        return results

    def close(self) -> None:
        """Refuse new jobs; the collector finishes what is queued, then stops."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def drain(self) -> None:
        """Wait for the queued work to finish, then stop the worker thread."""
        self.close()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)
