"""The dynamic batcher of `bilstm serve` in process, with a scorer that records its batches:
a lone request goes out at once whatever --max-delay-ms is; requests queued while the worker
scores go out together; a batch waits only while announced requests are still arriving, and
never past the delay; timed-out jobs are dropped; closing finishes what is queued."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from bilstm.runtime.serve.batching import Batcher, Draining, Job, QueueFull


class Recorder:
    """A scorer: each job's result is its payload ("bad...": a ValueError for that job;
    "boom...": the whole call raises); `gate` holds the worker until set."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, jobs: Sequence[Job]) -> list[Any]:
        self.gate.wait(10)
        self.batches.append([j.payload for j in jobs])
        if any(str(j.payload).startswith("boom") for j in jobs):
            raise RuntimeError("boom")
        return [
            ValueError(j.payload) if str(j.payload).startswith("bad") else j.payload for j in jobs
        ]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def make(scorer: Recorder, max_delay_s: float = 10.0, max_batch: int = 64) -> Batcher:
    return Batcher("m", scorer, max_batch, max_delay_s, max_queue_rows=100)


def test_a_lone_request_does_not_wait_for_the_delay() -> None:
    scorer = Recorder()

    async def main() -> float:
        batcher = make(scorer, max_delay_s=10.0)
        batcher.start()
        start = time.perf_counter()
        assert await batcher.submit("a", 1, "k") == "a"
        elapsed = time.perf_counter() - start
        await batcher.drain()
        return elapsed

    assert run(main()) < 2.0  # the delay is 10 s
    assert scorer.batches == [["a"]]


def test_requests_queued_while_the_worker_scores_go_out_together() -> None:
    scorer = Recorder()

    async def main() -> list[Any]:
        batcher = make(scorer, max_delay_s=0.0, max_batch=5)
        batcher.start()
        scorer.gate.clear()
        first = asyncio.ensure_future(batcher.submit("first", 1, "k"))
        while not batcher.busy:
            await asyncio.sleep(0.001)
        rest = [batcher.enqueue(f"r{i}", 1, "k") for i in range(6)]
        other = batcher.enqueue("other-key", 1, "k2")
        scorer.gate.set()
        results = await asyncio.gather(first, *rest, other)
        await batcher.drain()
        return results

    results = run(main())
    assert results == ["first", *[f"r{i}" for i in range(6)], "other-key"]
    # max_batch 5 rows: the six queued behind the first go out as 5 + 1, the other key alone
    assert scorer.batches == [
        ["first"],
        ["r0", "r1", "r2", "r3", "r4"],
        ["r5"],
        ["other-key"],
    ]


def test_a_batch_waits_for_announced_requests_within_the_delay() -> None:
    scorer = Recorder()

    async def main() -> tuple[float, float]:
        batcher = make(scorer, max_delay_s=5.0)
        batcher.start()
        with batcher.arriving() as arrival:
            first = asyncio.ensure_future(batcher.submit("a", 1, "k"))
            await asyncio.sleep(0.2)  # the batch waits: a request is still arriving
            assert scorer.batches == [] and batcher.queued_rows == 1
            start = time.perf_counter()
            second = batcher.enqueue("b", 1, "k", arrival)
        assert await asyncio.gather(first, second) == ["a", "b"]
        went = time.perf_counter() - start
        # an announced request that never comes holds the batch at most the delay
        batcher.max_delay_s = 0.3
        with batcher.arriving():
            start = time.perf_counter()
            assert await batcher.submit("c", 1, "k") == "c"
            held = time.perf_counter() - start
        await batcher.drain()
        return went, held

    went, held = run(main())
    assert went < 2.0  # dispatched when the announced job came, not at the 5 s deadline
    assert 0.25 <= held < 3.0
    assert scorer.batches == [["a", "b"], ["c"]]


def test_a_failed_arrival_releases_the_batch() -> None:
    scorer = Recorder()

    async def main() -> float:
        batcher = make(scorer, max_delay_s=10.0)
        batcher.start()
        arrival = batcher.arriving().__enter__()
        first = asyncio.ensure_future(batcher.submit("a", 1, "k"))
        await asyncio.sleep(0.1)
        start = time.perf_counter()
        arrival.close()  # e.g. its body was not JSON: nothing more is coming
        assert await first == "a"
        await batcher.drain()
        return time.perf_counter() - start

    assert run(main()) < 2.0


def test_unmergeable_jobs_errors_timeouts_and_limits() -> None:
    scorer = Recorder()

    async def main() -> None:
        batcher = make(scorer, max_delay_s=0.0)
        batcher.start()
        scorer.gate.clear()
        first = asyncio.ensure_future(batcher.submit("x", 1, None))
        while not batcher.busy:
            await asyncio.sleep(0.001)
        alone = [batcher.enqueue(p, 1, None) for p in ("n1", "n2")]
        good, bad = batcher.enqueue("ok", 1, "k"), batcher.enqueue("bad", 1, "k")
        boom = batcher.enqueue("boom", 1, "k")
        late = batcher.enqueue("late", 1, "k")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(late, 0.01)  # cancelled while queued: never scored
        with pytest.raises(QueueFull):
            batcher.enqueue("big", 100, "k")
        scorer.gate.set()
        assert await asyncio.gather(first, *alone, good) == ["x", "n1", "n2", "ok"]
        with pytest.raises(ValueError, match="bad"):
            await bad
        with pytest.raises(RuntimeError, match="boom"):
            await boom
        batcher.close()
        with pytest.raises(Draining):
            batcher.enqueue("after", 1, "k")
        await batcher.drain()

    run(main())
    flat = [p for b in scorer.batches for p in b]
    assert "late" not in flat and "after" not in flat
    # None keys are scored alone; the batch holding "boom" failed whole, then went job by job
    assert ["n1"] in scorer.batches and ["n2"] in scorer.batches
    assert scorer.batches[-4:] == [["ok", "bad", "boom"], ["ok"], ["bad"], ["boom"]]


def test_drain_finishes_queued_work() -> None:
    scorer = Recorder()

    async def main() -> list[Any]:
        batcher = make(scorer, max_delay_s=10.0, max_batch=2)
        batcher.start()
        scorer.gate.clear()
        futures = [batcher.enqueue(i, 1, "k") for i in range(5)]
        drained = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0.05)
        scorer.gate.set()
        await drained
        return [f.result() for f in futures]

    assert run(main()) == [0, 1, 2, 3, 4]


def test_hurry_stops_waiting_for_arrivals_but_takes_new_jobs() -> None:
    scorer = Recorder()

    async def main() -> float:
        batcher = make(scorer, max_delay_s=30.0)
        batcher.start()
        with batcher.arriving() as arrival:
            first = asyncio.ensure_future(batcher.submit("a", 1, "k"))
            await asyncio.sleep(0.1)
            assert scorer.batches == []  # waiting for the arrival
            start = time.perf_counter()
            batcher.hurry_threadsafe()  # SIGTERM: the batch goes now
            assert await first == "a"
            went = time.perf_counter() - start
            assert await batcher.enqueue("b", 1, "k", arrival) == "b"  # still accepted
        await batcher.drain()
        return went

    assert run(main()) < 2.0
    assert scorer.batches == [["a"], ["b"]]


def test_a_job_whose_client_left_is_not_scored() -> None:
    scorer = Recorder()

    async def main() -> list[Any]:
        batcher = make(scorer, max_delay_s=0.0)
        batcher.start()
        scorer.gate.clear()
        first = batcher.enqueue("first", 1, "k")
        while not batcher.busy:
            await asyncio.sleep(0.001)
        left = [False]
        gone = batcher.enqueue("gone", 1, "k", gone=lambda: left[0])
        stays = batcher.enqueue("stays", 1, "k", gone=lambda: False)
        left[0] = True  # the client leaves while its job is queued
        scorer.gate.set()
        results = await asyncio.gather(first, stays)
        await batcher.drain()
        return [*results, gone.cancelled()]

    assert run(main()) == ["first", "stays", True]
    assert scorer.batches == [["first"], ["stays"]]


def test_await_answer_without_a_cheap_check_listens_for_the_disconnect() -> None:
    pytest.importorskip("starlette")
    from starlette.requests import ClientDisconnect

    from bilstm.runtime.serve.asgi import await_answer

    async def leaves() -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    async def stays() -> dict[str, Any]:
        await asyncio.sleep(60)
        return {"type": "http.disconnect"}

    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[Any] = loop.create_future()
        with pytest.raises(ClientDisconnect):
            await await_answer(gone, leaves, 10.0, None)
        late: asyncio.Future[Any] = loop.create_future()
        with pytest.raises(asyncio.TimeoutError):
            await await_answer(late, stays, 0.05, None)
        answered: asyncio.Future[Any] = loop.create_future()
        loop.call_later(0.01, answered.set_result, "ok")
        assert await await_answer(answered, stays, 10.0, None) == "ok"
        return gone.cancelled(), late.cancelled()

    assert run(main()) == (True, True)


def test_access_lines_are_written_together_soon_after() -> None:
    pytest.importorskip("starlette")
    import logging

    from bilstm.runtime.serve.asgi import AccessLines, access_log

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    async def main() -> list[list[str]]:
        lines = AccessLines()
        lines.add("a")
        lines.add("b")
        seen = [list(records)]  # nothing written yet
        await asyncio.sleep(AccessLines.FLUSH_S * 4)
        seen.append(list(records))  # written together after FLUSH_S
        for i in range(AccessLines.MAX_LINES):
            lines.add(str(i))
        seen.append(list(records))  # a full buffer is written at once
        lines.add("last")
        lines.flush()  # shutdown
        seen.append(list(records))
        return seen

    keep = Keep()
    level = access_log.level
    access_log.addHandler(keep)
    access_log.setLevel(logging.INFO)
    try:
        seen = run(main())
    finally:
        access_log.removeHandler(keep)
        access_log.setLevel(level)
    full = "\n".join(str(i) for i in range(AccessLines.MAX_LINES))
    assert seen == [[], ["a\nb"], ["a\nb", full], ["a\nb", full, "last"]]
