"""The ASGI app of `bilstm serve` (FastAPI on uvicorn).

Routes (every error is a one-line JSON object `{"error": "..."}` with a 4xx/5xx status):

- `POST /v1/models/{name}/predict` `{"inputs": [...], "parameters": {...}}`: the records
  `bilstm-run` writes for those texts (or windows), one per input, in order; an item that
  cannot be scored is an error record, as in `bilstm-run`. `Accept: application/x-ndjson`
  gives the records as JSON lines, the bytes `bilstm-run` prints for a file of those lines.
- Open Inference Protocol (KServe v2 / Triton HTTP): `GET /v2`, `/v2/health/live`,
  `/v2/health/ready`, `/v2/models/{name}[/versions/1]`, `.../ready`, `POST .../infer` with
  JSON or binary tensors.
- `GET /metrics` (Prometheus text), `GET /docs` (OpenAPI).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import mmap
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from bilstm.core.errors import BiLSTMError, InputError
from bilstm.core.reader import DEFAULT_MAX_LINE_BYTES
from bilstm.runtime import metadata as md
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.output import _JsonLine
from bilstm.runtime.serve.batching import Arrival, Batcher, Draining, Job, QueueFull
from bilstm.runtime.serve.metrics import Metrics
from bilstm.runtime.serve.oip import (
    HEADER_LENGTH,
    TensorSpec,
    decode_inputs,
    encode_outputs,
    requested_outputs,
    split_body,
    stackable,
    tensor_specs,
)
from bilstm.runtime.taskspec import RunOptions

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NDJSON = "application/x-ndjson"
# Parameters of the predict endpoint: the per-record options of `bilstm-run` (each applies to
# the models whose TaskSpec lists it). Series options read a whole CSV series; the endpoint
# scores single windows, so they are refused with a reason.
RECORD_PARAMETERS: dict[str, type] = {"top_k": int, "probabilities": bool, "tokenize": str}
SERIES_PARAMETERS = ("rolling", "anomalies", "threshold")
# Rows per ORT call for text models in the server (see scoring_batch).
TEXT_SCORING_BATCH = 8
# Paths anyone may read without the API key: probes and the API's own description.
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json")
# A body over the limit is read and dropped up to this size so the client gets its 413
# (closing while it still sends would lose the answer); past it the connection is closed.
DRAIN_BYTES = 256 << 20

access_log = logging.getLogger("bilstm.serve.access")


@dataclass(frozen=True)
class ServeConfig:
    """The server's knobs (`bilstm serve --help` describes each)."""

    max_batch: int = 64
    max_delay_ms: float = 2.0
    max_queue: int = 8192
    max_items: int = 1024
    max_body_bytes: int = 8 << 20
    timeout_s: float = 30.0
    api_key: str | None = None
    access_log: bool = True


class HTTPError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())[:1000]}, status_code=status)


def batch_invariant(model: BiLSTM) -> bool:
    """True when a row's results do not depend on the other rows of its batch, so requests
    may be scored together. Dynamic quantization (int8 variants) computes one scale over the
    whole batch: such models score each request as its own batch."""
    with (
        open(model.path, "rb") as handle,
        mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m,
    ):
        return m.find(b"QuantizeLinear") < 0


@dataclass
class ServedModel:
    """One model, its OIP tensors and its batcher."""

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

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "parameters": {"task": self.model.task, "labels": self.model.labels},
            "inputs": [s.metadata() for s in self.inputs],
            "outputs": [s.metadata() for s in self.outputs],
        }


# -- scoring (worker threads) ---------------------------------------------------------------


@dataclass(frozen=True)
class PredictWork:
    values: list[Any]
    opts: RunOptions
    ndjson: bool


def score_predict(served: ServedModel, jobs: Sequence[Job]) -> list[Any]:
    """Records for each job's inputs, scored as one `value_records` call, serialised here
    (off the event loop) with `bilstm-run`'s own JSON writer. `line` is the input's position
    counted from 1, as `bilstm-run` numbers the lines of a file."""
    works: list[PredictWork] = [j.payload for j in jobs]
    values = [v for w in works for v in w.values]
    records = served.model.value_records(values, works[0].opts)
    if len(records) != len(values):
        raise RuntimeError(f"{len(values)} inputs gave {len(records)} records")
    encode = _JsonLine()
    results: list[Any] = []
    start = 0
    for work in works:
        mine = records[start : start + len(work.values)]
        start += len(work.values)
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
            body = f'{{"model": {json.dumps(served.name)}, "records": [{", ".join(lines)}]}}'
        results.append((body.encode("utf-8"), errors))
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
    results: list[Any] = []
    start = 0
    for job, work in zip(jobs, works, strict=True):
        # outputs without a batch axis (a standalone model's `classes`) go to every job whole
        mine = {k: v[start : start + job.rows] if k in batched else v for k, v in values.items()}
        start += job.rows
        results.append(
            encode_outputs(served.name, work.request_id, mine, served.outputs, work.binary)
        )
    return results


# -- request parsing --------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes: a declared length over it
    at once, a streamed body as soon as it passes it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _drain(request, int(declared))
        raise HTTPError(413, f"request body is {declared} bytes, over the limit of {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            await _drain(request, size)
            raise HTTPError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, size: int) -> None:
    if size > DRAIN_BYTES:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > DRAIN_BYTES:
                return
    except Exception:  # noqa: BLE001 - the stream was consumed or the client left
        return


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPError(400, "the body's JSON is nested too deeply") from None


def run_options(served: ServedModel, parameters: Any) -> RunOptions:
    """The predict request's `parameters` as `RunOptions` (unknown or inapplicable: 400)."""
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise HTTPError(400, "'parameters' must be a JSON object")
    model = served.model
    applies = sorted(p for p in RECORD_PARAMETERS if p in model.SPEC.run_options)
    chosen: dict[str, Any] = {}
    for name, value in parameters.items():
        if name in SERIES_PARAMETERS:
            raise HTTPError(
                400,
                f"parameter {name!r} scores a whole series (bilstm-run on a CSV); this "
                "endpoint forecasts each window given",
            )
        if name not in applies:
            raise HTTPError(
                400,
                f"parameter {name!r} does not apply to model {served.name!r} "
                f"({model.task}); it takes {applies or 'no parameters'}",
            )
        kind = RECORD_PARAMETERS[name]
        if type(value) is not kind or (isinstance(value, int) and kind is int and value < 1):
            raise HTTPError(400, f"parameter {name!r} must be a {kind.__name__}, got {value!r}")
        chosen[name] = value
    names = {f.name for f in fields(RunOptions)}
    assert set(chosen) <= names
    return RunOptions(scoring_batch(model), max_text_bytes=DEFAULT_MAX_LINE_BYTES, **chosen)


def scoring_batch(model: BiLSTM) -> int:
    """Rows per ONNX Runtime call when the server scores a batch of requests. ORT's LSTM runs
    every step of the longest row for all rows, and the texts of unrelated requests differ
    in length: one call on 64 of them cost as much as 64 calls on one each, while calls on
    length-sorted groups of 8 were ~1.5x faster than either (benchmarks/findings/serve.md).
    Inputs of one fixed length (forecast windows) keep the model's batch size."""
    if model.SPEC.text_input:
        return min(model.batch_size, TEXT_SCORING_BATCH)
    return model.batch_size


def check_feeds(feeds: dict[str, np.ndarray], max_items: int) -> int:
    """The rows of an infer request, its tensors checked where ONNX Runtime would misbehave
    (empty axes crash some kernels; lengths outside 1..time give NaN or errors)."""
    rows = {v.shape[0] for v in feeds.values() if v.ndim}
    if len(rows) != 1:
        raise HTTPError(400, f"inputs disagree on the batch size: {sorted(rows)}")
    count = int(next(iter(rows)))
    if count > max_items:
        raise HTTPError(413, f"{count} rows in one request, over --max-items {max_items}")
    for name, value in feeds.items():
        if 0 in value.shape:
            raise HTTPError(400, f"input {name!r} has an empty axis: shape {list(value.shape)}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise HTTPError(400, f"input {name!r} holds NaN or infinite values")
    lengths = feeds.get(md.LENGTHS)
    if lengths is not None:
        times = [v.shape[1] for k, v in feeds.items() if k != md.LENGTHS and v.ndim >= 2]
        limit = min(times) if times else None
        if lengths.min() < 1 or (limit is not None and lengths.max() > limit):
            raise HTTPError(400, f"{md.LENGTHS} must be within 1..{limit}")
    return count


# -- the app ------------------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or (host or "").startswith("127.")


class Guard:
    """Pure ASGI middleware: API key, draining, metrics and the JSON access log."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        status = 500
        sent = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        refusal = self.server.refusal(scope)
        scoring = None if refusal is not None else self.server.scoring_route(scope)
        try:
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
            elif scoring is not None:
                # Straight to the handler: FastAPI's routing, dependency and middleware layers
                # cost more of the event loop per request than the handler itself (profile in
                # benchmarks/findings/serve.md); the FastAPI routes stay for /docs.
                await self.server.answer(*scoring, scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = self.server.route_label(path)
            m = self.server.metrics
            m.requests.labels(route, str(status)).inc()
            m.latency.labels(route).observe(elapsed)
            if status >= 400:
                m.errors.labels(route).inc()
            if self.server.config.access_log and access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access_log.info(
                    json.dumps(
                        {
                            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                            "client": f"{client[0]}:{client[1]}" if client else None,
                            "method": scope.get("method"),
                            "path": path,
                            "status": status,
                            "bytes": sent,
                            "ms": round(elapsed * 1000, 3),
                        },
                        ensure_ascii=False,
                    )
                )


class Server:
    """The served models, their batchers and the server's state."""

    def __init__(self, models: dict[str, BiLSTM], config: ServeConfig) -> None:
        if not models:
            raise BiLSTMError("serve at least one model")
        self.config = config
        self.metrics = Metrics()
        self.draining = False
        self.ready = False
        self.models: dict[str, ServedModel] = {}
        for name, model in models.items():
            served = ServedModel(name, model, batch_invariant(model))
            served.inputs = tensor_specs(model.session.get_inputs())
            served.outputs = tensor_specs(model.session.get_outputs())
            served.infer_mergeable = served.mergeable and stackable(served.inputs, served.outputs)
            served.predict_batcher = self._batcher(name, served, score_predict)
            served.infer_batcher = self._batcher(name, served, score_infer)
            self.models[name] = served
        self._key = config.api_key.encode("utf-8") if config.api_key else None

    def _batcher(
        self,
        name: str,
        served: ServedModel,
        score: Callable[[ServedModel, Sequence[Job]], list[Any]],
    ) -> Batcher:
        m = self.metrics

        def observe(rows: int, seconds: float) -> None:
            m.batch_rows.labels(name).observe(rows)
            m.batch_seconds.labels(name).observe(seconds)

        gauge = m.queue_rows.labels(name)
        arriving = m.arriving.labels(name)
        return Batcher(
            name,
            lambda jobs: score(served, jobs),
            self.config.max_batch,
            self.config.max_delay_ms / 1000,
            self.config.max_queue,
            observe=observe,
            queue_gauge=lambda _rows: gauge.set(self._model_sum(name, "queued_rows")),
            arriving_gauge=lambda _n: arriving.set(self._model_sum(name, "arriving_requests")),
        )

    def _model_sum(self, name: str, attribute: str) -> int:
        """A batcher figure summed over the model's two batchers (predict and infer)."""
        served = self.models.get(name)
        if served is None:  # the batchers are being made
            return 0
        batchers = (served.predict_batcher, served.infer_batcher)
        return sum(int(getattr(b, attribute)) for b in batchers if b is not None)

    def batchers(self) -> list[Batcher]:
        return [b for s in self.models.values() for b in (s.predict_batcher, s.infer_batcher) if b]

    def begin_drain(self) -> None:
        """Shutdown has begun (callable from a signal handler): new requests get 503,
        readiness goes false, and batches stop waiting for requests still arriving."""
        self.draining = True
        for batcher in self.batchers():
            batcher.hurry_threadsafe()

    def route_label(self, path: str) -> str:
        """A bounded label for metrics: the route's shape, not the raw path."""
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[1] == "models" and parts[0] in ("v1", "v2"):
            model = parts[2] if parts[2] in self.models else "?"
            return "/".join([parts[0], "models", model, *parts[3:5]])[:80]
        known = {"v2", "v2/health/live", "v2/health/ready", "metrics", "docs", "openapi.json"}
        return path.strip("/") if path.strip("/") in known else "other"

    def refusal(self, scope: Scope) -> ASGIApp | None:
        """A response app when the request is refused before routing, else None."""
        path: str = scope["path"]
        if self._key is not None and path not in OPEN_PATHS:
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"x-api-key")
            auth = headers.get(b"authorization", b"")
            if given is None and auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
            if given is None or not hmac.compare_digest(given, self._key):
                return error_response(
                    401,
                    "missing or wrong API key (send 'Authorization: Bearer KEY' or 'X-API-Key')",
                )
        if self.draining and not path.startswith("/v2/health"):
            return error_response(503, "the server is shutting down")
        return None

    def model(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            raise HTTPError(404, f"unknown model {name!r}; serving {sorted(self.models)}")
        return served

    async def result(
        self, batcher: Batcher, arrival: Arrival, payload: Any, rows: int, key: Any
    ) -> Any:
        """Queue the request's job and wait for its result (503, 504 and 400 as HTTPError)."""
        try:
            future = batcher.enqueue(payload, rows, key, arrival)
        except (QueueFull, Draining) as exc:
            raise HTTPError(503, str(exc)) from None
        try:
            # on a future (not a coroutine) wait_for makes no task: a timer and a callback
            return await asyncio.wait_for(future, self.config.timeout_s)
        except asyncio.TimeoutError:
            raise HTTPError(
                504, f"no result within --timeout {self.config.timeout_s:g} s"
            ) from None
        except BiLSTMError as exc:
            raise HTTPError(400, str(exc)) from None

    def scoring_route(self, scope: Scope) -> tuple[Callable[[str, Request], Any], str] | None:
        """The handler and model name of `POST /v1/models/NAME/predict` or
        `/v2/models/NAME/infer`, else None."""
        if scope.get("method") != "POST":
            return None
        parts = scope["path"].split("/")
        if len(parts) != 5 or parts[0] or parts[2] != "models":
            return None
        if parts[1] == "v1" and parts[4] == "predict":
            return self.predict, parts[3]
        if parts[1] == "v2" and parts[4] == "infer":
            return self.infer, parts[3]
        return None

    async def answer(
        self,
        handler: Callable[[str, Request], Awaitable[Response]],
        name: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Run a scoring route's handler as a plain ASGI app, errors as one-line JSON."""
        try:
            response = await handler(name, Request(scope, receive))
        except HTTPError as exc:
            response = error_response(exc.status, exc.message)
        except Exception as exc:  # answered as 500, logged with the traceback
            logging.getLogger("bilstm.serve").exception("internal error")
            response = error_response(500, f"internal error: {type(exc).__name__}")
        await response(scope, receive, send)

    async def predict(self, name: str, request: Request) -> Response:
        served = self.model(name)
        batcher = served.predict_batcher
        assert batcher is not None
        with batcher.arriving() as arrival:
            return await self._predict(served, batcher, arrival, request)

    async def _predict(
        self, served: ServedModel, batcher: Batcher, arrival: Arrival, request: Request
    ) -> Response:
        body = await read_body(request, self.config.max_body_bytes)
        data = parse_json(body)
        if not isinstance(data, dict):
            raise HTTPError(400, 'the body must be a JSON object {"inputs": [...]}')
        unknown = sorted(set(data) - {"inputs", "parameters"})
        if unknown:
            raise HTTPError(400, f"unknown fields {unknown}; expected 'inputs' and 'parameters'")
        inputs = data.get("inputs")
        if not isinstance(inputs, list):
            raise HTTPError(400, "'inputs' must be a JSON list of inputs (texts or windows)")
        if not inputs:
            raise HTTPError(400, "'inputs' is empty; give at least one input")
        if len(inputs) > self.config.max_items:
            raise HTTPError(
                413,
                f"{len(inputs)} inputs in one request, over --max-items {self.config.max_items}",
            )
        opts = run_options(served, data.get("parameters"))
        ndjson = NDJSON in request.headers.get("accept", "")
        key = opts if served.mergeable else None
        work = PredictWork(inputs, opts, ndjson)
        payload, errors = await self.result(batcher, arrival, work, len(inputs), key)
        if errors:
            self.metrics.item_errors.labels(served.name).inc(errors)
        media = NDJSON if ndjson else "application/json"
        return Response(payload, media_type=media)

    async def infer(self, name: str, request: Request) -> Response:
        served = self.model(name)
        batcher = served.infer_batcher
        assert batcher is not None
        with batcher.arriving() as arrival:
            return await self._infer(served, batcher, arrival, request)

    async def _infer(
        self, served: ServedModel, batcher: Batcher, arrival: Arrival, request: Request
    ) -> Response:
        body = await read_body(request, self.config.max_body_bytes)
        try:
            header, binary = split_body(body, request.headers.get(HEADER_LENGTH))
            max_elements = max(1, self.config.max_body_bytes)
            feeds = decode_inputs(header, binary, served.inputs, max_elements)
            names, as_binary = requested_outputs(header, served.outputs)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(400, f"the infer request is not valid JSON: {exc}") from None
        except RecursionError:
            raise HTTPError(400, "the infer request's JSON is nested too deeply") from None
        except InputError as exc:
            raise HTTPError(400, str(exc)) from None
        rows = check_feeds(feeds, self.config.max_items)
        key = None
        if served.infer_mergeable:
            shapes = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in feeds.items()))
            key = (shapes, tuple(names))
        work = InferWork(feeds, names, as_binary, header.get("id"))
        payload, header_length = await self.result(batcher, arrival, work, rows, key)
        if header_length is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={HEADER_LENGTH: str(header_length)},
        )


PREDICT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "inputs": {
                        "type": "array",
                        "description": "texts (classify, tag, cloze) or windows "
                        "[time >= window, columns] of numbers (forecast)",
                        "items": {},
                    },
                    "parameters": {
                        "type": "object",
                        "description": "top_k (cloze), probabilities (classify, tag), "
                        "tokenize spaces|words (tag)",
                    },
                },
            },
            "example": {"inputs": ["A gorgeous, witty, seductive movie."]},
        }
    },
}
INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["inputs"]},
            "example": {
                "inputs": [
                    {"name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [5, 6, 7]},
                    {"name": "lengths", "shape": [1], "datatype": "INT64", "data": [3]},
                ]
            },
        }
    },
}


def create_app(models: dict[str, BiLSTM], config: ServeConfig | None = None) -> FastAPI:
    """The app serving `models` (name -> loaded model)."""
    from bilstm.runtime.version import __version__

    server = Server(models, config or ServeConfig())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for batcher in server.batchers():
            batcher.start()
        server.ready = True
        try:
            yield
        finally:
            server.ready = False
            server.draining = True
            await asyncio.gather(*(b.drain() for b in server.batchers()))

    app = FastAPI(
        title="bilstm serve",
        version=__version__,
        description="BiLSTM models: task records and the Open Inference Protocol (KServe v2).",
        lifespan=lifespan,
    )
    app.state.server = server

    @app.exception_handler(HTTPError)
    async def _http_error(_request: Request, exc: HTTPError) -> Response:
        return error_response(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> Response:
        logging.getLogger("bilstm.serve").exception("internal error")
        return error_response(500, f"internal error: {type(exc).__name__}")

    @app.post("/v1/models/{name}/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(name: str, request: Request) -> Response:
        """Records as `bilstm-run` writes them, one per input (errors are records)."""
        return await server.predict(name, request)

    @app.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        """OIP server metadata."""
        return {"name": "bilstm", "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        """The process answers."""
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        """Models loaded and not shutting down (503 otherwise)."""
        ok = server.ready and not server.draining
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    def _version(version: str | None) -> None:
        if version not in (None, "1"):
            raise HTTPError(404, f"unknown model version {version!r}; the only version is 1")

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata: the graph's inputs and outputs (-1: any size)."""
        _version(version)
        return server.model(name).metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        """The model is loaded and the server is not shutting down."""
        _version(version)
        server.model(name)
        ok = server.ready and not server.draining
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @app.post("/v2/models/{name}/infer", openapi_extra={"requestBody": INFER_BODY})
    @app.post(
        "/v2/models/{name}/versions/{version}/infer", openapi_extra={"requestBody": INFER_BODY}
    )
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        """OIP inference: the graph run on the given tensors (JSON or binary)."""
        _version(version)
        return await server.infer(name, request)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(server.metrics.render(), media_type=Metrics.CONTENT_TYPE)

    app.add_middleware(Guard, server=server)
    return app


def setup_access_log(enabled: bool) -> None:
    """One JSON line per request on stderr."""
    access_log.propagate = False
    access_log.setLevel(logging.INFO if enabled else logging.WARNING)
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
