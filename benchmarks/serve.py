"""`bilstm serve` under load: requests/s and p50/p99 latency for 1, 8 and 64 concurrent clients.

    python -m benchmarks.serve [--requests 600] [--concurrency 1,8,64] [--threads 1] [--smoke]

Four servers' answers to one review per request, measured in the same run, on loopback:

- `constant`: the bilstm server's own stack (uvicorn + FastAPI + the middleware: access log,
  metrics, key check) answering a constant record: the HTTP ceiling;
- `batching on`: `POST /v1/models/NAME/predict` with dynamic batching (--max-batch 64,
  --max-delay-ms 2);
- `batching off`: the same with --max-batch 1 (each request scored alone);
- `torch`: a FastAPI endpoint (sync `def`, FastAPI's thread pool) calling the PyTorch model
  per request, the way a PyTorch user would write it.

The model: a classifier of the shipped `sentiment` model's shape (embedding 128, BiLSTM 128,
max pooling) trained one epoch here (`bilstm train`) and exported, so both sides run the same
weights. Texts: rt_sentiment dev (../shared) when present, else synthetic.

Load generator: this process, asyncio with one keep-alive HTTP/1.1 connection per client
(raw streams, pre-built request bytes: less client overhead than an HTTP library), each
client sending its next request when the previous answer arrives (closed loop); a bounded
number of requests per cell, after 20 warm-up requests. Servers are subprocesses bound to
127.0.0.1 on a free port; each stops on SIGTERM after its cells, and by itself after
--server-lifetime seconds whatever happens here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    SHARED_DEV,
    machine_info,
    make_sentiment_tsv,
    parser,
    quantile,
    read_tsv,
    save,
    train_cli,
)

PORT_LINE = re.compile(r"PORT (\d+)")
CONSTANT = b'{"model": "m", "records": [{"line": 1, "label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}}]}'  # noqa: E501


# -- servers (run as `python -m benchmarks.serve _server ...`) ----------------------------------


def _server_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["bilstm", "torch"])
    p.add_argument("path")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-delay-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lifetime", type=float, default=600)
    args = p.parse_args(argv)
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    threading.Timer(args.lifetime, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    if args.kind == "bilstm":
        from bilstm.runtime.model import BiLSTM
        from bilstm.runtime.serve.app import ServeConfig, create_app, setup_access_log

        model = BiLSTM.load(args.path, threads=args.threads)
        model.warmup(1)
        app = create_app(
            {"m": model},
            ServeConfig(max_batch=args.max_batch, max_delay_ms=args.max_delay_ms),
        )
        setup_access_log(False)  # the log line costs the same on every route; measured apart

        async def constant(request: Request) -> Response:
            await request.body()
            return Response(CONSTANT, media_type="application/json")

        app.add_route("/bench/constant", constant, methods=["POST"])

    else:
        import torch

        from bilstm.core.tokenizer import Tokenizer
        from bilstm.models import load_checkpoint

        torch.set_num_threads(args.threads)
        ckpt = load_checkpoint(Path(args.path))
        net = ckpt.model.eval()
        tokenize, encode = Tokenizer(ckpt.tokenizer).tokenize, ckpt.vocabulary.encode
        labels = ckpt.labels
        app = FastAPI()

        @app.post("/v1/models/m/predict")
        def predict(body: dict[str, Any]) -> dict[str, Any]:
            records = []
            for n, text in enumerate(body["inputs"], start=1):
                ids = encode(tokenize(text))
                if not ids:
                    records.append({"line": n, "label": None, "probabilities": None})
                    continue
                with torch.inference_mode():
                    x = torch.tensor([ids], dtype=torch.int64)
                    pr = torch.softmax(net(x, torch.tensor([len(ids)])), dim=-1)[0].tolist()
                best = max(range(len(pr)), key=pr.__getitem__)
                probs = {lab: round(v, 6) for lab, v in zip(labels, pr, strict=True)}
                records.append({"line": n, "label": labels[best], "probabilities": probs})
            return {"model": "m", "records": records}

    class Announcing(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            for srv in self.servers:
                for sock in srv.sockets:
                    print(f"PORT {sock.getsockname()[1]}", file=sys.stderr, flush=True)

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    Announcing(config).run()  # SIGTERM: uvicorn's graceful shutdown
    os._exit(0)  # the lifetime timer thread must not keep the process


class Server:
    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "benchmarks.serve", "_server", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = PORT_LINE.search(line)
            if m:
                self.port = int(m.group(1))
                break
        else:
            raise RuntimeError(f"server {args} did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr or []], daemon=True).start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- load generator ------------------------------------------------------------------------------


def request_bytes(path: str, text: str) -> bytes:
    body = json.dumps({"inputs": [text]}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _client(
    port: int, requests: list[bytes], latencies: list[float], counter: list[int], total: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            start = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            body = await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"status {status}: {body[:200]!r}")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def load(port: int, requests: list[bytes], clients: int, total: int) -> dict[str, Any]:
    warm: list[float] = []
    await asyncio.gather(
        *(_client(port, requests, warm, [0], 20 // clients + 1) for _ in range(min(clients, 8)))
    )
    latencies: list[float] = []
    counter = [0]
    start = time.perf_counter()
    await asyncio.gather(
        *(_client(port, requests, latencies, counter, total) for _ in range(clients))
    )
    wall = time.perf_counter() - start
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(quantile(latencies, 0.5) * 1000, 2),
        "p99_ms": round(quantile(latencies, 0.99) * 1000, 2),
    }


# -- main ------------------------------------------------------------------------------------------


def build_model(directory: Path, smoke: bool) -> tuple[Path, Path]:
    from bilstm.export import export_checkpoint

    train = make_sentiment_tsv(directory / "train.tsv", 200 if smoke else 2000, seed=1)
    dev = make_sentiment_tsv(directory / "dev.tsv", 60, seed=2)
    ckpt = directory / "ckpt"
    dims = ["--embedding-dim", "12", "--hidden-size", "8"] if smoke else []
    dims = dims or ["--embedding-dim", "128", "--hidden-size", "128", "--pooling", "max"]
    train_cli(
        [
            "classify",
            "--data",
            str(train),
            "--dev",
            str(dev),
            "--out",
            str(ckpt),
            "--epochs",
            "1",
            *dims,
        ]
    )
    model = directory / "m.onnx"
    export_checkpoint(ckpt, model)
    return model, ckpt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_server"]:
        _server_main(argv[1:])
        return 0
    p = parser("serve", __doc__.splitlines()[0] if __doc__ else None)
    p.set_defaults(threads=1)
    p.add_argument("--requests", type=int, default=600, help="requests per cell")
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--server-lifetime", type=float, default=900)
    args = p.parse_args(argv)
    clients = [int(c) for c in args.concurrency.split(",")]
    total = 40 if args.smoke else args.requests
    if args.smoke:
        clients = [1, 8]
    texts = [t for _, t in read_tsv(SHARED_DEV)] if SHARED_DEV.exists() and not args.smoke else []
    with tempfile.TemporaryDirectory(prefix="bilstm-serve-bench-") as tmp:
        model, ckpt = build_model(Path(tmp), args.smoke)
        if not texts:
            texts = [t for _, t in read_tsv(Path(tmp) / "dev.tsv")]
        life = str(args.server_lifetime)
        threads = str(args.threads)
        cells: dict[str, dict[str, Any]] = {}
        plans = [
            (
                ("bilstm", str(model), "--threads", threads, "--lifetime", life),
                [("constant", "/bench/constant"), ("batching on", "/v1/models/m/predict")],
            ),
            (
                (
                    "bilstm",
                    str(model),
                    "--max-batch",
                    "1",
                    "--threads",
                    threads,
                    "--lifetime",
                    life,
                ),
                [("batching off", "/v1/models/m/predict")],
            ),
            (
                ("torch", str(ckpt), "--threads", threads, "--lifetime", life),
                [("torch (FastAPI, per request)", "/v1/models/m/predict")],
            ),
        ]
        for server_args, routes in plans:
            server = Server(*server_args)
            try:
                for label, path in routes:
                    reqs = [request_bytes(path, t) for t in texts]
                    for c in clients:
                        cell = asyncio.run(load(server.port, reqs, c, total))
                        cells.setdefault(label, {})[str(c)] = cell
                        print(f"{label:30s} c={c:3d} {cell}", file=sys.stderr)
            finally:
                server.stop()
    machine = machine_info()
    save(
        "serve",
        args,
        argv,
        {
            "requests_per_cell": total,
            "concurrency": clients,
            "server_threads": args.threads,
            "cells": cells,
        },
        machine,
    )
    print(render(cells, clients))
    return 0


def render(cells: dict[str, dict[str, Any]], clients: list[int]) -> str:
    head = "| server | " + " | ".join(f"{c} clients: req/s, p50, p99 (ms)" for c in clients) + " |"
    rows = [head, "| --- |" + " --- |" * len(clients)]
    for label, by_c in cells.items():
        parts = ["{rps:,.0f}, {p50_ms:.1f}, {p99_ms:.1f}".format(**by_c[str(c)]) for c in clients]
        rows.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
