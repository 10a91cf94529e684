"""Serve this folder on loopback with the headers that let onnxruntime-web use wasm threads.

    python examples/web/serve.py              # http://127.0.0.1:8080/
    python examples/web/serve.py --port 0     # any free port (printed on stdout)

Multi-threaded WebAssembly needs `SharedArrayBuffer`, which browsers give only to a
cross-origin isolated page: `Cross-Origin-Opener-Policy: same-origin` and
`Cross-Origin-Embedder-Policy: require-corp` on the page and its scripts. Without them the page
still works, on one thread. Standard library only; binds 127.0.0.1 (a development server, not
for the open network).
"""

from __future__ import annotations

import argparse
import functools
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with the cross-origin isolation headers, no caching, quiet log."""

    extensions_map = {  # noqa: RUF012 (the base class's attribute, extended)
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")  # rebuilt models show up on reload
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


def make_server(root: Path = HERE, port: int = 8080, verbose: bool = False) -> ThreadingHTTPServer:
    """A server for `root` on 127.0.0.1:`port` (0: a free port); call `serve_forever`."""
    handler = functools.partial(IsolatedHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def serve_in_thread(root: Path = HERE) -> tuple[ThreadingHTTPServer, str]:
    """Start a server on a free loopback port in a daemon thread; returns it and its URL.
    Stop it with `server.shutdown()`."""
    server = make_server(root, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve examples/web on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free one)")
    parser.add_argument("--log", action="store_true", help="log each request on stderr")
    args = parser.parse_args(argv)
    if not (HERE / "node_modules" / "onnxruntime-web").is_dir():
        print(
            f"error: run `npm ci` in {HERE.name}/ first (onnxruntime-web is missing)",
            file=sys.stderr,
        )
        return 2
    try:
        server = make_server(HERE, args.port, args.log)
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    print("serving examples/web with cross-origin isolation; Ctrl-C stops", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
