"""The ASGI app of `bilstm serve` (FastAPI on uvicorn, behind a plain ASGI `Guard`).

Routes (every error is a one-line JSON object `{"error": "..."}` with a 4xx/5xx status):

- `POST /v1/models/{name}/predict` `{"inputs": [...], "parameters": {...}}`: the records
  `bilstm-run` writes for those texts (or windows), one per input, in order; an item that
  cannot be scored is an error record, as in `bilstm-run`. `Accept: application/x-ndjson`
  gives the records as JSON lines, the bytes `bilstm-run` prints for a file of those lines.
- Open Inference Protocol (KServe v2 / Triton HTTP): `GET /v2`, `/v2/health/live`,
  `/v2/health/ready`, `/v2/models/{name}[/versions/1]`, `.../ready`, `POST .../infer` with
  JSON or binary tensors.
- `GET /metrics` (Prometheus text), `GET /docs` (OpenAPI).

Module map: `asgi.py` (the outer layer and the hot path's plain ASGI), `routes.py` (the
FastAPI routes), `parsing.py` (request checks), `scoring.py` (the worker threads' side),
`batching.py` (the queues), `oip.py` (tensors), `metrics.py` (Prometheus).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bilstm.core.errors import BiLSTMError, InputError
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.serve.asgi import (
    AccessLines,
    Guard,
    Handler,
    Receive,
    Reply,
    Scope,
    access_log,
    await_answer,
    error_reply,
    gone_check,
    header,
    read_body,
)
from bilstm.runtime.serve.batching import Arrival, Batcher, Draining, Job, QueueFull
from bilstm.runtime.serve.metrics import Metrics
from bilstm.runtime.serve.oip import (
    HEADER_LENGTH,
    decode_inputs,
    requested_outputs,
    split_body,
    stackable,
    tensor_specs,
)
from bilstm.runtime.serve.parsing import (
    HTTPError,
    check_feeds,
    parse_json,
    predict_inputs,
    run_options,
)
from bilstm.runtime.serve.scoring import (
    InferWork,
    PredictWork,
    ServedModel,
    batch_invariant,
    score_infer,
    score_predict,
)

NDJSON = "application/x-ndjson"
# Paths anyone may read without the API key: probes and the API's own description.
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready", "/docs", "/openapi.json")


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


class Server:
    """The served models, their batchers, the server's state and the scoring handlers."""

    def __init__(self, models: dict[str, BiLSTM], config: ServeConfig) -> None:
        if not models:
            raise BiLSTMError("serve at least one model")
        self.config = config
        self.metrics = Metrics()
        self.draining = False
        self.ready = False
        self.access_lines = AccessLines()
        self.models: dict[str, ServedModel] = {}
        for name, model in models.items():
            served = ServedModel(name, model, batch_invariant(model))
            served.inputs = tensor_specs(model.session.get_inputs())
            served.outputs = tensor_specs(model.session.get_outputs())
            served.infer_mergeable = served.mergeable and stackable(served.inputs, served.outputs)
            served.default_options = run_options(served, None)
            served.stage = self._stage_observer(name)
            served.predict_batcher = self._batcher(name, served, score_predict)
            served.infer_batcher = self._batcher(name, served, score_infer)
            self.models[name] = served
        self._key = config.api_key.encode("utf-8") if config.api_key else None

    def _stage_observer(self, name: str) -> Callable[[str, float], None]:
        """Observes `bilstm_stage_seconds` for model `name` (children made once)."""
        stages = ("queue", "form", "score", "encode", "wake")
        children = {s: self.metrics.stage.labels(name, s) for s in stages}

        def observe(stage: str, seconds: float) -> None:
            children[stage].observe(seconds)

        return observe

    def _batcher(
        self,
        name: str,
        served: ServedModel,
        score: Callable[[ServedModel, Sequence[Job]], list[Any]],
    ) -> Batcher:
        m = self.metrics
        rows_seen = m.batch_rows.labels(name)
        seconds_seen = m.batch_seconds.labels(name)

        def observe(rows: int, seconds: float) -> None:
            rows_seen.observe(rows)
            seconds_seen.observe(seconds)

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
            stage=served.stage,
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

    def refusal(self, scope: Scope) -> Reply | None:
        """The answer when the request is refused before routing, else None."""
        path: str = scope["path"]
        if self._key is not None and path not in OPEN_PATHS:
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"x-api-key")
            auth = headers.get(b"authorization", b"")
            if given is None and auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
            if given is None or not hmac.compare_digest(given, self._key):
                return error_reply(
                    401,
                    "missing or wrong API key (send 'Authorization: Bearer KEY' or 'X-API-Key')",
                )
        if self.draining and not path.startswith("/v2/health"):
            return error_reply(503, "the server is shutting down")
        return None

    def scoring_route(self, scope: Scope) -> tuple[Handler, str, str] | None:
        """The handler, model name and metrics label of `POST /v1/models/NAME/predict` or
        `/v2/models/NAME/infer`, else None."""
        if scope["method"] != "POST":
            return None
        parts = scope["path"].split("/")
        if len(parts) != 5 or parts[0] or parts[2] != "models":
            return None
        name = parts[3]
        shown = name if name in self.models else "?"
        if parts[1] == "v1" and parts[4] == "predict":
            return self.predict, name, f"v1/models/{shown}/predict"
        if parts[1] == "v2" and parts[4] == "infer":
            return self.infer, name, f"v2/models/{shown}/infer"
        return None

    def model(self, name: str) -> ServedModel:
        served = self.models.get(name)
        if served is None:
            raise HTTPError(404, f"unknown model {name!r}; serving {sorted(self.models)}")
        return served

    async def result(
        self,
        batcher: Batcher,
        arrival: Arrival,
        payload: Any,
        rows: int,
        key: Any,
        receive: Receive,
    ) -> Any:
        """Queue the request's job and wait for its result (503, 504 and 400 as HTTPError;
        `ClientDisconnect` if the client leaves first)."""
        gone = gone_check(receive)
        try:
            future = batcher.enqueue(payload, rows, key, arrival, gone)
        except (QueueFull, Draining) as exc:
            raise HTTPError(503, str(exc)) from None
        try:
            return await await_answer(future, receive, self.config.timeout_s, gone)
        except asyncio.TimeoutError:
            raise HTTPError(
                504, f"no result within --timeout {self.config.timeout_s:g} s"
            ) from None
        except BiLSTMError as exc:
            raise HTTPError(400, str(exc)) from None

    async def predict(self, name: str, scope: Scope, receive: Receive) -> Reply:
        """Records as `bilstm-run` writes them, one per input (errors are records)."""
        served = self.model(name)
        batcher = served.predict_batcher
        assert batcher is not None
        with batcher.arriving() as arrival:
            body = await read_body(scope, receive, self.config.max_body_bytes)
            data = parse_json(body)
            inputs = predict_inputs(data, self.config.max_items)
            opts = run_options(served, data.get("parameters"))
            ndjson = NDJSON in (header(scope, b"accept") or "")
            key = opts if served.mergeable else None
            work = PredictWork(inputs, opts, ndjson)
            found = await self.result(batcher, arrival, work, len(inputs), key, receive)
        payload, errors = found
        if errors:
            self.metrics.item_errors.labels(served.name).inc(errors)
        return Reply(200, payload, NDJSON if ndjson else "application/json")

    async def infer(self, name: str, scope: Scope, receive: Receive) -> Reply:
        """OIP inference: the graph run on the given tensors (JSON or binary)."""
        served = self.model(name)
        batcher = served.infer_batcher
        assert batcher is not None
        with batcher.arriving() as arrival:
            body = await read_body(scope, receive, self.config.max_body_bytes)
            work, rows = self._infer_work(served, scope, body)
            key = None
            if served.infer_mergeable:
                shapes = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in work.feeds.items()))
                key = (shapes, tuple(work.names))
            found = await self.result(batcher, arrival, work, rows, key, receive)
        payload, header_length = found
        if header_length is None:
            return Reply(200, payload)
        return Reply(
            200, payload, "application/octet-stream", ((HEADER_LENGTH, str(header_length)),)
        )

    def _infer_work(self, served: ServedModel, scope: Scope, body: bytes) -> tuple[InferWork, int]:
        """An infer body's tensors, checked, and their rows."""
        try:
            header_, binary = split_body(body, header(scope, HEADER_LENGTH.lower().encode()))
            max_elements = max(1, self.config.max_body_bytes)
            feeds = decode_inputs(header_, binary, served.inputs, max_elements)
            names, as_binary = requested_outputs(header_, served.outputs)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HTTPError(400, f"the infer request is not valid JSON: {exc}") from None
        except RecursionError:
            raise HTTPError(400, "the infer request's JSON is nested too deeply") from None
        except InputError as exc:
            raise HTTPError(400, str(exc)) from None
        rows = check_feeds(feeds, self.config.max_items)
        return InferWork(feeds, names, as_binary, header_.get("id")), rows


def create_app(models: dict[str, BiLSTM], config: ServeConfig | None = None) -> Guard:
    """The ASGI app serving `models` (name -> loaded model): the `Guard` in front of the
    FastAPI app (`app.api`); `app.server` is the `Server`."""
    from bilstm.runtime.serve.routes import build_api

    server = Server(models, config or ServeConfig())
    return Guard(build_api(server), server)


def setup_access_log(enabled: bool) -> None:
    """One JSON line per request on stderr."""
    access_log.propagate = False
    access_log.setLevel(logging.INFO if enabled else logging.WARNING)
    if not access_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
