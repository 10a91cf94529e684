"""What the worker threads run: a batch of jobs scored in one model call, each job's answer
encoded to bytes there (off the event loop).

Each scorer times its two stages, the model (`score`) and the answer bytes (`encode`), and
reports them through `ServedModel.stage` (the `bilstm_stage_seconds` histogram).
"""

from __future__ import annotations

import json
import mmap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bilstm.core.errors import InputError
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.output import _JsonLine
from bilstm.runtime.serve.batching import Batcher, Job
from bilstm.runtime.serve.oip import TensorSpec, encode_outputs
from bilstm.runtime.taskspec import RunOptions

# Rows per ORT call for text models in the server (see scoring_batch).
TEXT_SCORING_BATCH = 4


def batch_invariant(model: BiLSTM) -> bool:
    """True when a row's results do not depend on the other rows of its batch, so requests
    may be scored together. Dynamic quantization (int8 variants) computes one scale over the
    whole batch: such models score each request as its own batch."""
    with (
        open(model.path, "rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m,
    ):
        return m.find(b"QuantizeLinear") < 0


def scoring_batch(model: BiLSTM, mergeable: bool) -> int:
    """Rows per ONNX Runtime call when the server scores a batch of requests. ORT's LSTM runs
    every step of the longest row for all rows, and the texts of unrelated requests differ
    in length: one call on 64 of them cost as much as 64 calls on one each. On random
    32-review batches of rt dev, length-sorted calls of 4 rows scored 6-10% more rows per
    CPU-second than calls of 8, and calls of 1, 2, 16 or 32 fewer still (measurements in
    benchmarks/findings/serve.md). Inputs of one fixed length (forecast windows) keep the
    model's batch size, as do models whose results depend on the batch (not `mergeable`:
    int8 with dynamic quantization), so that a request's records are those `bilstm-run`
    writes for its lines."""
    if model.SPEC.text_input and mergeable:
        return min(model.batch_size, TEXT_SCORING_BATCH)
    return model.batch_size


def _no_stage(_stage: str, _seconds: float) -> None:
    return None


@dataclass
class ServedModel:
    """One model, its OIP tensors and its batchers."""

    name: str
    model: BiLSTM
    mergeable: bool
    """Requests may be scored together (results do not depend on the other rows)."""
    infer_mergeable: bool = False
    """OIP requests with equal input shapes may be stacked (see `oip.stackable`)."""
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    predict_batcher: Batcher | None = None
    infer_batcher: Batcher | None = None
    default_options: RunOptions | None = None
    """The predict options of a request without parameters (made once, not per request)."""
    stage: Callable[[str, float], None] = _no_stage
    """Observes a worker stage's seconds (`score`, `encode`)."""

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "parameters": {"task": self.model.task, "labels": self.model.labels},
            "inputs": [s.metadata() for s in self.inputs],
            "outputs": [s.metadata() for s in self.outputs],
        }


@dataclass(frozen=True)
class PredictWork:
    values: list[Any]
    opts: RunOptions
    ndjson: bool


def score_predict(served: ServedModel, jobs: Sequence[Job]) -> list[Any]:
    """Records for each job's inputs, scored as one `value_records` call, serialised here
    with `bilstm-run`'s own JSON writer: per job, (body bytes, error records). `line` is the
    input's position counted from 1, as `bilstm-run` numbers the lines of a file."""
    start = time.perf_counter()
    works: list[PredictWork] = [j.payload for j in jobs]
    values = [v for w in works for v in w.values]
    records = served.model.value_records(values, works[0].opts)
    if len(records) != len(values):
        raise RuntimeError(f"{len(values)} inputs gave {len(records)} records")
    scored = time.perf_counter()
    encode = _JsonLine()
    results: list[Any] = []
    at = 0
    head = f'{{"model": {json.dumps(served.name)}, "records": ['
    for work in works:
        mine = records[at : at + len(work.values)]
        at += len(work.values)
        lines = []
        errors = 0
        for i, record in enumerate(mine):
            if "line" in record:
                record["line"] = i + 1
            errors += "error" in record
            lines.append(encode(record))
        if work.ndjson:
            body = "".join(line + "\n" for line in lines)
        else:
            body = head + ", ".join(lines) + "]}"
        results.append((body.encode("utf-8"), errors))
    served.stage("score", scored - start)
    served.stage("encode", time.perf_counter() - scored)
    return results


@dataclass(frozen=True)
class InferWork:
    feeds: dict[str, np.ndarray]
    names: list[str]
    binary: dict[str, bool]
    request_id: Any


def score_infer(served: ServedModel, jobs: Sequence[Job]) -> list[Any]:
    """Run the graph once on the jobs' tensors stacked along the batch axis, split the
    outputs back (every output's first axis is the batch) and encode each response."""
    start = time.perf_counter()
    works: list[InferWork] = [j.payload for j in jobs]
    if len(works) == 1:
        feeds = works[0].feeds
    else:
        feeds = {k: np.concatenate([w.feeds[k] for w in works]) for k in works[0].feeds}
    values = served.model.run(feeds, works[0].names)
    rows = sum(j.rows for j in jobs)
    batched = {s.name for s in served.outputs if s.batched}
    for name, value in values.items():
        if name in batched and (value.ndim == 0 or value.shape[0] != rows):
            raise InputError(f"output {name!r} has shape {list(value.shape)}, not [{rows}, ...]")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InputError(f"output {name!r} holds non-finite values for these inputs")
    scored = time.perf_counter()
    results: list[Any] = []
    at = 0
    for job, work in zip(jobs, works, strict=True):
        # outputs without a batch axis (a standalone model's `classes`) go to every job whole
        mine = {k: v[at : at + job.rows] if k in batched else v for k, v in values.items()}
        at += job.rows
        results.append(
            encode_outputs(served.name, work.request_id, mine, served.outputs, work.binary)
        )
    served.stage("score", scored - start)
    served.stage("encode", time.perf_counter() - scored)
    return results
