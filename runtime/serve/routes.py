"""The FastAPI side of `bilstm serve`: health, metadata, metrics, the OpenAPI docs, and the
scoring routes again for /docs and the versioned infer path (the `Guard` answers the plain
scoring paths itself)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from bilstm.runtime.serve.app import Server
from bilstm.runtime.serve.asgi import CLIENT_GONE, error_reply, log
from bilstm.runtime.serve.metrics import Metrics
from bilstm.runtime.serve.parsing import HTTPError

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


def _version(version: str | None) -> None:
    if version not in (None, "1"):
        raise HTTPError(404, f"unknown model version {version!r}; the only version is 1")


def health_routes(server: Server) -> APIRouter:
    """`/v2` (server metadata), liveness, readiness and `/metrics`."""
    from bilstm.runtime.version import __version__

    router = APIRouter()

    @router.get("/v2")
    async def server_metadata() -> dict[str, Any]:
        """OIP server metadata."""
        return {"name": "bilstm", "version": __version__, "extensions": ["binary_tensor_data"]}

    @router.get("/v2/health/live")
    async def live() -> dict[str, bool]:
        """The process answers."""
        return {"live": True}

    @router.get("/v2/health/ready")
    async def ready() -> Response:
        """Models loaded and not shutting down (503 otherwise)."""
        ok = server.ready and not server.draining
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(server.metrics.render(), media_type=Metrics.CONTENT_TYPE)

    return router


def model_routes(server: Server) -> APIRouter:
    """OIP model metadata and readiness, with or without `/versions/1`."""
    router = APIRouter()

    @router.get("/v2/models/{name}")
    @router.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata: the graph's inputs and outputs (-1: any size)."""
        _version(version)
        return server.model(name).metadata()

    @router.get("/v2/models/{name}/ready")
    @router.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str | None = None) -> Response:
        """The model is loaded and the server is not shutting down."""
        _version(version)
        server.model(name)
        ok = server.ready and not server.draining
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    return router


def scoring_routes(server: Server) -> APIRouter:
    """The predict and infer routes, run by the same handlers as the `Guard`'s fast path."""
    router = APIRouter()

    @router.post("/v1/models/{name}/predict", openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(name: str, request: Request) -> Response:
        """Records as `bilstm-run` writes them, one per input (errors are records)."""
        reply = await server.predict(name, request.scope, request.receive)
        return reply.response()

    @router.post("/v2/models/{name}/infer", openapi_extra={"requestBody": INFER_BODY})
    @router.post(
        "/v2/models/{name}/versions/{version}/infer", openapi_extra={"requestBody": INFER_BODY}
    )
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        """OIP inference: the graph run on the given tensors (JSON or binary)."""
        _version(version)
        reply = await server.infer(name, request.scope, request.receive)
        return reply.response()

    return router


def add_error_handlers(app: FastAPI) -> None:
    """Every error as one line of JSON; a client that left as 499 (sent to no one)."""

    @app.exception_handler(HTTPError)
    async def _http_error(_request: Request, exc: HTTPError) -> Response:
        return error_reply(exc.status, exc.message).response()

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return error_reply(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(ClientDisconnect)
    async def _gone(_request: Request, _exc: ClientDisconnect) -> Response:
        return Response(status_code=CLIENT_GONE)

    @app.exception_handler(Exception)
    async def _internal(_request: Request, exc: Exception) -> Response:
        log.exception("internal error")
        return error_reply(500, f"internal error: {type(exc).__name__}").response()


def build_api(server: Server) -> FastAPI:
    """The FastAPI app: routes, error handlers, and a lifespan that starts the batchers and
    drains them at shutdown."""
    from bilstm.runtime.version import __version__

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for batcher in server.batchers():
            batcher.start()
        # The models, FastAPI and numpy live as long as the process: moved out of the
        # collector's generations, they no longer make each full collection a pause of the
        # event loop and the GIL (~30 ms with them tracked, on the benchmark's box).
        gc.collect()
        gc.freeze()
        server.ready = True
        try:
            yield
        finally:
            server.ready = False
            server.draining = True
            await asyncio.gather(*(b.drain() for b in server.batchers()))
            server.access_lines.flush()

    app = FastAPI(
        title="bilstm serve",
        version=__version__,
        description="BiLSTM models: task records and the Open Inference Protocol (KServe v2).",
        lifespan=lifespan,
    )
    app.state.server = server
    add_error_handlers(app)
    for router in (scoring_routes(server), health_routes(server), model_routes(server)):
        app.include_router(router)
    return app
