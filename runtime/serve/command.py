"""`bilstm serve MODEL [MODEL ...]`: the models behind HTTP on uvicorn.

This module imports only typer and the standard library: the umbrella `bilstm` registers the
command from it without paying for FastAPI, uvicorn or the models until `serve` runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bilstm.runtime.model import BiLSTM

API_KEY_ENV = "BILSTM_API_KEY"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _missing_extra(exc: ImportError) -> typer.Exit:
    typer.echo(
        f"error: `bilstm serve` needs the serve extra ({exc.name or exc} is not installed): "
        "pip install 'bilstm[serve]'",
        err=True,
    )
    return typer.Exit(2)


def model_name(spec: str) -> tuple[str, str]:
    """`NAME=PATH`, a built-in name, or a path (served under the file's stem)."""
    if "=" in spec and not Path(spec).exists():
        name, _, target = spec.partition("=")
        return name, target
    file = Path(spec)
    if file.exists() or file.suffix == ".onnx" or len(file.parts) > 1:
        return file.stem, spec
    return spec, spec


def load_models(specs: list[str], threads: int | None) -> dict[str, BiLSTM]:
    """Load each model once (name -> model), warmed up; duplicate names are an error."""
    from bilstm.core.errors import BiLSTMError
    from bilstm.runtime.model import BiLSTM

    models: dict[str, BiLSTM] = {}
    for spec in specs:
        name, path = model_name(spec)
        if not name or "/" in name or name in models:
            raise BiLSTMError(
                f"{spec}: model name {name!r} is empty, has '/' or is given twice; "
                "name it with NAME=PATH"
            )
        model = BiLSTM.load(path, threads=threads)
        model.warmup(1)
        models[name] = model
    return models


def default_threads(models: int) -> int:
    """ONNX Runtime intra-op threads per model: the cores left after the event loop's,
    shared among the models (each model has its own worker thread)."""
    from bilstm.runtime.frames import cpu_cores

    return max(1, (cpu_cores() - 1) // max(1, models))


def serve(
    models: Annotated[
        list[str],
        typer.Argument(
            help="Models: built-in names or .onnx paths (served under the file's stem), "
            "or NAME=PATH.",
            show_default=False,
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port (0: any free port).", min=0, max=65535)] = 8000,
    max_batch: Annotated[
        int, typer.Option(help="Most rows scored together (1: no dynamic batching).", min=1)
    ] = 64,
    max_delay_ms: Annotated[
        float,
        typer.Option(
            help="Longest a queued request waits for requests still being received (a batch "
            "goes out at once when none are).",
            min=0,
        ),
    ] = 2.0,
    max_queue: Annotated[
        int, typer.Option(help="Rows queued per model before requests get 503.", min=1)
    ] = 8192,
    max_items: Annotated[
        int, typer.Option(help="Most inputs (rows) in one request (413 over it).", min=1)
    ] = 1024,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body (413 over it).", min=1)
    ] = 8 << 20,
    timeout: Annotated[
        float, typer.Option(help="Seconds a request may wait for its result (504).", min=0.001)
    ] = 30.0,
    threads: Annotated[
        int | None,
        typer.Option(
            help="ONNX Runtime threads per model [default: (cores - 1) / models, at least 1].",
            min=1,
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help=f"Require this key (Authorization: Bearer KEY or X-API-Key) on every route "
            f"but health and docs. Needed to bind off loopback. Env: {API_KEY_ENV}.",
            envvar=API_KEY_ENV,
            show_default=False,
            show_envvar=False,
        ),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="One JSON line per request on stderr.")] = True,
    graceful_timeout: Annotated[
        int,
        typer.Option(help="Seconds SIGTERM waits for accepted requests to finish.", min=1),
    ] = 30,
) -> None:
    """Serve models over HTTP (needs the serve extra: pip install 'bilstm\\[serve]').

    Task records at /v1/models/NAME/predict, the Open Inference Protocol (KServe v2 /
    Triton HTTP) under /v2, Prometheus metrics at /metrics, OpenAPI docs at /docs.
    """
    refuse_open_host(host, api_key)
    settings = {
        "max_batch": max_batch,
        "max_delay_ms": max_delay_ms,
        "max_queue": max(max_queue, max_items),
        "max_items": max_items,
        "max_body_bytes": max_body_bytes,
        "timeout_s": timeout,
        "api_key": api_key,
        "access_log": access_log,
    }
    run_server(models, threads, settings, host, port, graceful_timeout)


def refuse_open_host(host: str, api_key: str | None) -> None:
    """Exit 2 when `host` is not loopback and no API key is given."""
    if host not in LOOPBACK and not host.startswith("127.") and not api_key:
        typer.echo(
            f"error: --host {host} is reachable from other machines: give --api-key (or "
            f"{API_KEY_ENV}) so that only clients with the key are answered",
            err=True,
        )
        raise typer.Exit(2)


def run_server(
    models: list[str],
    threads: int | None,
    settings: dict[str, Any],
    host: str,
    port: int,
    graceful_timeout: int,
) -> None:
    """Load the models, build the app with `settings` (`ServeConfig` fields) and run it on
    uvicorn until SIGTERM/SIGINT (exit 2 if it cannot start)."""
    from bilstm.core.errors import BiLSTMError

    try:
        import uvicorn

        from bilstm.runtime.serve.app import ServeConfig, create_app, setup_access_log
    except ImportError as exc:
        raise _missing_extra(exc) from None
    config = ServeConfig(**settings)
    try:
        loaded = load_models(models, threads or default_threads(len(models)))
        app = create_app(loaded, config)
    except BiLSTMError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_access_log(config.access_log)
    server = _server_class(uvicorn)(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, graceful_timeout),
            server_header=False,
        )
    )
    server.run()
    if not server.started:
        raise typer.Exit(2)


def _server_class(uvicorn: Any) -> Any:
    class Server(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's server; SIGTERM/SIGINT first mark the app as draining (new requests
        get 503, readiness goes false) and the process exits 0 after a graceful drain."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                served = self.config.app.server.models
                for srv in self.servers:
                    for sock in srv.sockets:
                        host, port = sock.getsockname()[:2]
                        shown = f"[{host}]" if ":" in host else host
                        print(
                            f"bilstm serve: {', '.join(served)} on http://{shown}:{port} "
                            f"(pid {os.getpid()}, docs: /docs)",
                            file=sys.stderr,
                            flush=True,
                        )

        def handle_exit(self, sig: int, frame: Any) -> None:
            self.config.app.server.begin_drain()
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # drained: exit 0, not by the re-raised signal

    return Server
