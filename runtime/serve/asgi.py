"""Plain ASGI for the hot path: the outermost layer of the app (`Guard`), request bodies read
from `receive`, answers sent as two messages, and clients that leave.

The scoring routes (`POST /v1/models/NAME/predict`, `/v2/models/NAME/infer`) are answered
here without FastAPI's middleware, routing and response layers, which cost the event loop
more per request than the handler itself (benchmarks/findings/serve.md); FastAPI serves
everything else, and the same handlers again for `/docs` and the versioned infer path.

A client that goes away before its answer (while its body is read, or while its job waits
or is scored) is logged with status 499, as nginx logs it, and its queued job is dropped;
nothing is sent and it is no server error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from bilstm.runtime.serve.parsing import HTTPError, error_body

if TYPE_CHECKING:
    from bilstm.runtime.serve.app import Server

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLIENT_GONE = 499
"""Status logged (never sent) for a client that left before its answer (nginx's 499)."""
# A body over the limit is read and dropped up to this size so the client gets its 413
# (closing while it still sends would lose the answer); past it the connection is closed.
DRAIN_BYTES = 256 << 20

access_log = logging.getLogger("bilstm.serve.access")
log = logging.getLogger("bilstm.serve")


@dataclass(frozen=True)
class Reply:
    """An answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    media_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> Response:
        """The same answer as a Starlette response (for FastAPI routes)."""
        return Response(
            self.body, self.status, headers=dict(self.headers), media_type=self.media_type
        )


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, error_body(message))


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.media_type.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode("latin-1")),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (`name` in lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes: a declared length
    over it at once, a streamed body as soon as it passes it; `ClientDisconnect` if the
    client leaves before the end."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _drain(receive, int(declared))
        raise HTTPError(413, f"request body is {declared} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _drain(receive, size)
            raise HTTPError(413, f"request body is over the limit of {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:
                return bytes(chunk)
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def _drain(receive: Receive, size: int) -> None:
    if size > DRAIN_BYTES:
        return
    seen = 0
    while seen <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def gone_check(receive: Receive) -> Callable[[], bool] | None:
    """A cheap test of whether the client has left, where the server offers one: uvicorn's
    `receive` is a method of its request cycle, whose `disconnected` turns true when the
    connection drops. None elsewhere (then `await_answer` listens on `receive`)."""
    cycle = getattr(receive, "__self__", None)
    if isinstance(getattr(cycle, "disconnected", None), bool):
        return lambda: bool(cycle.disconnected)  # type: ignore[union-attr]
    return None


async def await_answer(
    future: asyncio.Future[Any],
    receive: Receive,
    timeout: float,
    gone: Callable[[], bool] | None,
) -> Any:
    """The job's result; `asyncio.TimeoutError` after `timeout` seconds, `ClientDisconnect`
    if the client has left (the batcher cancels a job whose `gone()` is true before scoring
    it; checked again here when the result comes). Without `gone`, a task listens on
    `receive` for the disconnect instead (call after the body has been read: the only
    message left for `receive` is then the disconnect); a task per request costs the event
    loop about a fifth of its time per request, hence the check."""
    loop = asyncio.get_running_loop()
    why: list[str] = []

    def stop(reason: str) -> None:
        if not future.done():
            why.append(reason)
            future.cancel()

    def left(task: asyncio.Future[Message]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        if task.result().get("type") == "http.disconnect":
            stop("gone")

    timer = loop.call_later(timeout, stop, "timeout")
    watch = None
    if gone is None:
        watch = asyncio.ensure_future(receive())
        watch.add_done_callback(left)
    try:
        result = await future
    except asyncio.CancelledError:
        if why and why[0] == "timeout":
            raise asyncio.TimeoutError() from None
        if why or (gone is not None and gone()):
            raise ClientDisconnect() from None
        raise  # the request's own task was cancelled (shutdown)
    finally:
        timer.cancel()
        if watch is not None and not watch.done():
            watch.cancel()
    if gone is not None and gone():
        raise ClientDisconnect()
    return result


Handler = Callable[[str, Scope, Receive], Awaitable[Reply]]


class Guard:
    """The app's outermost ASGI layer: API key, draining, the scoring routes straight to
    their handlers, everything else to FastAPI; metrics and the JSON access log for all."""

    def __init__(self, api: ASGIApp, server: Server) -> None:
        self.api = api
        self.server = server
        # prometheus children by (route, status): `labels()` costs a lock and a lookup
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.api(scope, receive, send)  # lifespan
            return
        start = time.perf_counter()
        server = self.server
        refusal = server.refusal(scope)
        route = None if refusal is not None else server.scoring_route(scope)
        if refusal is not None or route is not None:
            label = route[2] if route is not None else server.route_label(scope["path"])
            reply = refusal or await self._score(route, scope, receive)  # type: ignore[arg-type]
            status, sent = CLIENT_GONE, 0
            if reply is not None:
                await send_reply(send, reply)
                status, sent = reply.status, len(reply.body)
            self._record(scope, label, status, sent, start)
            return
        status, sent = 500, 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.api(scope, receive, send_wrapper)
        except ClientDisconnect:
            status = CLIENT_GONE
        finally:
            self._record(scope, server.route_label(scope["path"]), status, sent, start)

    async def _score(
        self, route: tuple[Handler, str, str], scope: Scope, receive: Receive
    ) -> Reply | None:
        """A scoring route's reply (errors as one-line JSON); None if the client left."""
        handler, name, _label = route
        try:
            return await handler(name, scope, receive)
        except HTTPError as exc:
            return error_reply(exc.status, exc.message)
        except ClientDisconnect:
            return None
        except Exception as exc:  # answered as 500, logged with the traceback
            log.exception("internal error")
            return error_reply(500, f"internal error: {type(exc).__name__}")

    def _record(self, scope: Scope, label: str, status: int, sent: int, start: float) -> None:
        elapsed = time.perf_counter() - start
        children = self._children.get((label, status))
        if children is None:
            m = self.server.metrics
            children = (
                m.requests.labels(label, str(status)),
                m.latency.labels(label),
                m.errors.labels(label) if status >= 400 else None,
            )
            if len(self._children) < 4096:  # labels are bounded; this is a safety net
                self._children[(label, status)] = children
        children[0].inc()
        children[1].observe(elapsed)
        if children[2] is not None:
            children[2].inc()
        if self.server.config.access_log and access_log.isEnabledFor(logging.INFO):
            self.server.access_lines.add(access_line(scope, status, sent, elapsed))

    @property
    def state(self) -> Any:
        """FastAPI's app state (`state.server`), as on the FastAPI app itself."""
        return getattr(self.api, "state", None)


class AccessLines:
    """The access log's lines, written together `FLUSH_S` after the first one not yet written
    (at once past `MAX_LINES`, and at shutdown): one logging record and one write per burst.
    A record and a flushed write per request cost ~0.1 ms of event loop each, half the
    requests/s of the server without scoring (benchmarks/findings/serve.md); a line now
    reaches stderr at most `FLUSH_S` late (nginx's `access_log ... buffer= flush=`)."""

    FLUSH_S = 0.05
    MAX_LINES = 512

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self.MAX_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write the lines held (one record: the lines joined by newlines)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            text = "\n".join(self._lines)
            self._lines = []
            access_log.info(text)


def access_line(scope: Scope, status: int, sent: int, elapsed: float) -> str:
    client = scope.get("client")
    return json.dumps(
        {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "method": scope.get("method"),
            "path": scope["path"],
            "status": status,
            "bytes": sent,
            "ms": round(elapsed * 1000, 3),
        },
        ensure_ascii=False,
    )
