"""Dynamic batching: concurrent requests for one model are queued and scored together.

A `Batcher` owns one model session's queue and one worker thread. Its collector task (on the
event loop) takes the oldest job and every queued job of the same kind (`Job.key`) that fits
in `max_batch` rows, and hands the batch to the worker thread at once, unless requests for
this batcher are still arriving (announced with `arriving()`, their bodies not yet read and
parsed): only then does it wait for them, at most `max_delay_s` from the oldest job's arrival.
Under load the batches form by themselves: while the worker thread scores one batch, the
loop keeps accepting, and everything queued meanwhile goes out as the next batch. A lone
request never waits for company that is not coming (the cost of the fixed wait that Triton's
`max_queue_delay` pays at low load). Jobs whose key is None are scored alone (a model whose
results would depend on the batch, e.g. int8 with dynamic quantization, gets None keys).

Stages, timed for `/metrics` when a `stage` callback is given: `queue` (per job: queued until
taken into a batch), `form` (per batch: first job taken until handed to the worker), `wake`
(per batch: the worker done until the event loop hands out the results).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
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
    gone: Callable[[], bool] | None = None
    """True once the job's client has left: the job is then cancelled, not scored."""

    def dropped(self) -> bool:
        """Cancelled, or its client gone (then cancelled here)."""
        if self.gone is not None and not self.future.done() and self.gone():
            self.future.cancel()
        return self.future.cancelled()


# Event-loop passes a forming batch may take to pick up requests whose bytes had already
# arrived (each pass runs the handlers that are ready and polls the sockets once); it stops
# at the first pass that brings no new job. See Batcher._gather.
SETTLE_PASSES = 1

Scorer = Callable[[Sequence[Job]], list[Any]]
"""Scores a batch of jobs (in the worker thread); one result, or an exception, per job."""


class Arrival:
    """A request on its way into a batcher (body being read or parsed): while any is open,
    a forming batch may wait for it. Closed when its job is queued or the request fails."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._open = False

    def __enter__(self) -> Arrival:
        self._open = True
        self._batcher._arriving += 1
        self._batcher._arrivals_changed()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._batcher._arriving -= 1
            self._batcher._arrivals_changed()
            self._batcher._wake()


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
        arriving_gauge: Callable[[int], None] | None = None,
        stage: Callable[[str, float], None] | None = None,
    ) -> None:
        self.name = name
        self._score = score
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.max_queue_rows = max_queue_rows
        self._observe = observe
        self._queue_gauge = queue_gauge
        self._arriving_gauge = arriving_gauge
        self._stage = stage
        self._scored_at = 0.0  # when the worker finished the last batch (its clock)
        self._queue: deque[Job] = deque()
        self._queued_rows = 0
        self._forming = 0  # rows of the batch that is waiting for more
        self._arriving = 0  # open Arrivals: requests known to be coming
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"bilstm-serve-{name}")
        self._closing = False
        self._hurry = False  # shutting down: no more waiting for arriving requests
        self._loop: asyncio.AbstractEventLoop | None = None
        self.busy = False

    @property
    def queued_rows(self) -> int:
        """Rows waiting: queued, or in the batch that waits for more (not yet scoring)."""
        return self._queued_rows + self._forming

    @property
    def arriving_requests(self) -> int:
        """Requests announced with `arriving()` whose job is not queued yet."""
        return self._arriving

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._collect())

    def arriving(self) -> Arrival:
        """Announce a request whose job will follow (use as a context manager around reading
        and parsing it; `enqueue(..., arrival)` closes it)."""
        return Arrival(self)

    def enqueue(
        self,
        payload: Any,
        rows: int,
        key: Hashable | None,
        arrival: Arrival | None = None,
        gone: Callable[[], bool] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a job; its future gets the result (or the exception). Cancelling the future
        (a timeout) drops the job if it is not being scored yet, as does `gone()` turning
        true (its client left) before the job's batch goes to the worker."""
        if arrival is not None:
            arrival.close()
        if self._closing:
            raise Draining("the server is shutting down")
        if self._queued_rows and self._queued_rows + rows > self.max_queue_rows:
            raise QueueFull(
                f"model {self.name!r} has {self._queued_rows} rows queued (--max-queue "
                f"{self.max_queue_rows}); retry later"
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(Job(payload, rows, key, future, gone=gone))
        self._set_queued(self._queued_rows + rows)
        self._wake()
        return future

    async def submit(self, payload: Any, rows: int, key: Hashable | None) -> Any:
        """Queue a job and wait for its result (its exception is raised here)."""
        return await self.enqueue(payload, rows, key)

    def _arrivals_changed(self) -> None:
        if self._arriving_gauge is not None:
            self._arriving_gauge(self._arriving)

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _set_queued(self, rows: int, forming: int | None = None) -> None:
        self._queued_rows = rows
        if forming is not None:
            self._forming = forming
        if self._queue_gauge is not None:
            self._queue_gauge(self.queued_rows)

    def _take(self, first: Job, batch: list[Job], rows: int) -> int:
        """Move queued jobs that fit and merge with `first` into `batch`; the rows now held."""
        if first.key is None or not self._queue:
            return rows
        kept: deque[Job] = deque()
        queued = self._queued_rows
        now = time.perf_counter()
        while self._queue:
            job = self._queue.popleft()
            if job.dropped():
                queued -= job.rows
            elif job.key == first.key and rows + job.rows <= self.max_batch:
                batch.append(job)
                rows += job.rows
                queued -= job.rows
                if self._stage is not None:
                    self._stage("queue", now - job.enqueued)
            else:
                kept.append(job)
        self._queue = kept
        self._set_queued(queued, rows)  # the gauge once per pass, not once per job
        return rows

    async def _gather(self, first: Job, batch: list[Job], rows: int) -> int:
        """Fill the batch: what is queued now, what the requests already parsed on this pass
        of the event loop queue, and, while requests are still arriving, what they bring
        until the oldest job has waited `max_delay_s`."""
        assert self._wakeup is not None
        rows = self._take(first, batch, rows)
        if first.key is None or rows >= self.max_batch:
            return rows
        deadline = first.enqueued + self.max_delay_s
        for _ in range(SETTLE_PASSES):
            # a loop pass: handlers that are ready queue their jobs
            await asyncio.sleep(0)
            before = rows
            rows = self._take(first, batch, rows)
            if rows == before or rows >= self.max_batch or time.perf_counter() >= deadline:
                break
        while self._arriving and rows < self.max_batch and not (self._closing or self._hurry):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except asyncio.TimeoutError:
                pass
            rows = self._take(first, batch, rows)
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
            if first.dropped():
                self._set_queued(self._queued_rows, 0)
                continue
            formed = time.perf_counter()
            if self._stage is not None:
                self._stage("queue", formed - first.enqueued)
            batch = [first]
            await self._gather(first, batch, first.rows)
            batch = [job for job in batch if not job.dropped()]
            self._set_queued(self._queued_rows, 0)
            if not batch:
                continue
            start = time.perf_counter()
            self.busy = True
            try:
                results = await loop.run_in_executor(self._executor, self._score_all, batch)
            finally:
                self.busy = False
            done = time.perf_counter()
            if self._stage is not None:
                self._stage("form", start - formed)
                self._stage("wake", max(0.0, done - self._scored_at))
            if self._observe is not None:
                self._observe(sum(job.rows for job in batch), self._scored_at - start)
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
        finally:
            self._scored_at = time.perf_counter()
        results: list[Any] = []
        for job in batch:
            try:
                results.extend(self._score([job]))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                results.append(exc)
        self._scored_at = time.perf_counter()
        return results

    def hurry(self) -> None:
        """Stop waiting for arriving requests (shutdown has begun): batches go out at once;
        jobs are still accepted until `close`."""
        self._hurry = True
        self._wake()

    def hurry_threadsafe(self) -> None:
        """`hurry` from a signal handler or another thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.hurry)

    def close(self) -> None:
        """Refuse new jobs; the collector finishes what is queued, then stops."""
        self._closing = True
        self._wake()

    async def drain(self) -> None:
        """Wait for the queued work to finish, then stop the worker thread."""
        self.close()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)
