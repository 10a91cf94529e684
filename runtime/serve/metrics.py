"""The Prometheus metrics of one server (its own registry: several apps in one process, as in
tests, do not share counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Request counts, errors, queue length, batch sizes and latencies."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bilstm_requests", "HTTP requests answered", ["route", "code"], registry=r
        )
        self.errors = Counter(
            "bilstm_request_errors", "HTTP requests answered with 4xx/5xx", ["route"], registry=r
        )
        self.item_errors = Counter(
            "bilstm_item_errors", "Items answered with an error record", ["model"], registry=r
        )
        self.latency = Histogram(
            "bilstm_request_latency_seconds",
            "Time from request start to response",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_rows = Gauge(
            "bilstm_queue_rows", "Rows waiting for a batch", ["model"], registry=r
        )
        self.arriving = Gauge(
            "bilstm_arriving_requests",
            "Requests being received (body not yet read and parsed); a batch may wait for them",
            ["model"],
            registry=r,
        )
        self.batch_rows = Histogram(
            "bilstm_batch_rows",
            "Rows per scored batch",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "bilstm_batch_seconds",
            "Time to score one batch (worker thread)",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.stage = Histogram(
            "bilstm_stage_seconds",
            "Time in each stage: queue (a job, queued until taken into a batch), form (a "
            "batch, first job taken until handed to the worker), score (the model call), "
            "encode (the answers' bytes), wake (worker done until the event loop hands out "
            "the results)",
            ["model", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
