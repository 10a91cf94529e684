"""`bilstm serve` under load: requests/s and p50/p99 latency for 1, 8 and 64 concurrent clients.

    python -m benchmarks.serve [--requests 500] [--concurrency 1,8,64] [--threads 1]
        [--batch-texts 32] [--batch-requests 150] [--batch-concurrency 1,8]
        [--http auto|h11|httptools] [--loop auto|asyncio|uvloop] [--profile DIR] [--smoke]
        [--rounds N] [--parts ceiling,on,off,torch,batch,run] [--trim 0.1]
        [--cold-connections] [--variants 'FLAG=VALUE ...;...']

Servers measured in the same run, on loopback, with one review of rt_sentiment dev per
request (then requests of `--batch-texts` reviews):

- `ceiling`: the same bilstm server process and route (`POST /v1/models/NAME/predict`: the
  ASGI guard, body limit, JSON parsing, the batcher and its worker thread) for a model whose
  scoring is replaced by a constant record: everything but scoring;
- `batching on`: the predict route with the default knobs (--max-batch 64, --max-delay-ms 2);
- `batching off`: the same with --max-batch 1 (each request scored alone);
- `torch`: a FastAPI endpoint (sync `def`, FastAPI's thread pool, pydantic body) calling the
  PyTorch model of the same weights per request, as a competent PyTorch user writes it:
  `torch.inference_mode()`, `torch.set_num_threads` matched to ONNX Runtime's, the texts of a
  request grouped by exact token count and the LSTM layers run on the plain tensor (packing
  is PyTorch's slow path and unneeded for equal lengths);
- `bilstm-run`: scoring-only items/s (the summary line, after loading) of `bilstm-run
  --threads N` on a file of the same texts, the reference for the requests of 32 texts.

The model: a classifier of the shipped `sentiment` model's shape (embedding 128, BiLSTM 128,
max pooling) trained one epoch here (`bilstm train`) and exported, so both sides run the same
weights. Texts: rt_sentiment dev (../shared, from the public Rotten Tomatoes snippets of
Pang and Lee, 2005) when present, else synthetic.

Load generator: this process, asyncio with one keep-alive HTTP/1.1 connection per client
(raw streams, pre-built request bytes: less client overhead than an HTTP library), each
client sending its next request when the previous answer arrives (closed loop); a bounded
number of requests per cell, after 20 warm-up requests and one untimed request on each
client's connection. Requests/s and latencies are those of the requests that end in the
cell's steady part (`--trim` of its wall time left out at each end; `all_rps`, `all_p99_ms`:
the whole cell). Per cell also: CPU milliseconds per request of the server's event loop,
its other threads (scoring) and this load generator (from /proc schedstat), the cores they
kept busy, rows per batch and the server's per-stage means (`bilstm_stage_seconds`). With
`--rounds N` all servers run at once and every cell N times, server after server; each
cell reports its median round (a shared machine's load bursts then fall on all servers).
Servers are subprocesses bound to 127.0.0.1 on a free port; each stops on SIGTERM after its
cells, and by itself after --server-lifetime seconds whatever happens here. With --profile
DIR (needs py-spy), the batching-on server is sampled during its cell at the highest
concurrency; the raw stacks go to DIR and the busiest frames per thread into the results.
"""

import argparse
import asyncio
import collections
import gc
import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    SHARED_DEV,
    bin_path,
    machine_info,
    make_sentiment_tsv,
    median,
    parser,
    quantile,
    read_tsv,
    save,
    train_cli,
)

PORT_LINE = re.compile(r"PORT (\d+) HTTP (\S+) LOOP (\S+)")
SUMMARY = re.compile(r"(\d+) (?:lines|records), \d+ errors, ([\d.]+) s")
CONSTANT_RECORD = (
    '{"line": 1, "label": "positive", "probabilities": {"negative": 0.1, "positive": 0.9}}'
)
PREDICT = "/v1/models/{}/predict"
PARTS = ("ceiling", "on", "off", "torch", "batch", "run")
PART_OF = {"ceiling": "ceiling", "batching on": "on", "batching off": "off"}


# -- servers (run as `python -m benchmarks.serve _server ...`) ----------------------------------


def _server_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["bilstm", "torch"])
    p.add_argument("path")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-delay-ms", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--http", default="auto")
    p.add_argument("--loop", default="auto")
    p.add_argument("--lifetime", type=float, default=600)
    p.add_argument("--switch-interval-ms", type=float, default=None)
    p.add_argument("--scoring-batch", type=int, default=None)
    p.add_argument("--access-log", type=int, default=0)
    p.add_argument("--settle-passes", type=int, default=None)
    p.add_argument("--app-module", default="bilstm.runtime.serve.app")
    p.add_argument("--gc-freeze", type=int, default=1)
    args = p.parse_args(argv)
    import uvicorn

    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)

    threading.Timer(args.lifetime, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    app = _bilstm_app(args) if args.kind == "bilstm" else _torch_app(args)

    class Announcing(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            http = self.config.http_protocol_class.__module__.rsplit(".", 1)[-1]
            loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
            for srv in self.servers:
                for sock in srv.sockets:
                    port = sock.getsockname()[1]
                    print(f"PORT {port} HTTP {http} LOOP {loop}", file=sys.stderr, flush=True)

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        http=args.http,
        loop=args.loop,
    )
    Announcing(config).run()  # SIGTERM: uvicorn's graceful shutdown
    os._exit(0)  # the lifetime timer thread must not keep the process


def _bilstm_app(args: argparse.Namespace) -> Any:
    """`bilstm serve`'s app for the model as "m", and as "constant" with scoring replaced by
    a constant record per input (the ceiling: the same path without the model)."""
    from bilstm.runtime.model import BiLSTM
    from bilstm.runtime.serve import batching, scoring

    # another build of the app (the same API: score_predict, ServeConfig, create_app,
    # setup_access_log), e.g. an earlier commit's runtime/serve copied as a package
    serve_app = importlib.import_module(args.app_module)
    if not args.gc_freeze:
        gc.freeze = lambda: None  # measure the server without the start-up freeze

    model = BiLSTM.load(args.path, threads=args.threads)
    model.warmup(1)
    score = serve_app.score_predict
    if args.scoring_batch:
        scoring.TEXT_SCORING_BATCH = args.scoring_batch  # read when the app is made
    if args.settle_passes is not None:
        batching.SETTLE_PASSES = args.settle_passes  # read per batch

    def score_or_constant(served: Any, jobs: Any) -> list[Any]:
        if served.name != "constant":
            return score(served, jobs)
        results = []
        for job in jobs:
            records = ", ".join([CONSTANT_RECORD] * len(job.payload.values))
            results.append((f'{{"model": "constant", "records": [{records}]}}'.encode(), 0))
        return results

    serve_app.score_predict = score_or_constant  # read when the app's batchers are made
    config = serve_app.ServeConfig(
        max_batch=args.max_batch,
        max_delay_ms=args.max_delay_ms,
        access_log=bool(args.access_log),
    )
    app = serve_app.create_app({"m": model, "constant": model}, config)
    # off by default: the line costs the same on every route (variant access-log=1 measures it)
    serve_app.setup_access_log(bool(args.access_log))
    return app


def _torch_app(args: argparse.Namespace) -> Any:
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel

    from bilstm.core.tokenizer import Tokenizer
    from bilstm.models import load_checkpoint
    from bilstm.models.network import merge_directions

    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(Path(args.path))
    net = ckpt.model.eval()
    cfg = net.cfg
    if cfg.pooling not in ("max", "mean", "last"):
        raise SystemExit(f"the torch endpoint runs max/mean/last pooling, not {cfg.pooling}")
    tokenize, encode = Tokenizer(ckpt.tokenizer).tokenize, ckpt.vocabulary.encode
    labels = ckpt.labels

    def logits_of(ids: torch.Tensor) -> torch.Tensor:
        """The model's forward for rows of one length: no packing needed (nor mask)."""
        x = net.embedding(ids)
        final = x
        for rnn in net.encoder.layers:
            y, state = rnn(x)
            h_n = state[0] if isinstance(state, tuple) else state
            h = cfg.direction_size
            x = merge_directions(y[..., :h], y[..., h:], cfg.merge)
            final = merge_directions(h_n[0], h_n[1], cfg.merge)
        pooled = {"max": lambda: x.max(dim=1).values, "mean": lambda: x.mean(dim=1)}.get(
            cfg.pooling, lambda: final
        )()
        return net.output(pooled)

    class Body(BaseModel):  # resolved at definition: this module has no lazy annotations
        inputs: list[str]

    app = FastAPI()

    @app.post("/v1/models/m/predict")
    def predict(body: Body) -> dict[str, Any]:
        ids = [encode(tokenize(text)) for text in body.inputs]
        by_length: dict[int, list[int]] = collections.defaultdict(list)
        for i, seq in enumerate(ids):
            if seq:
                by_length[len(seq)].append(i)
        probs: list[list[float] | None] = [None] * len(ids)
        with torch.inference_mode():
            for rows in by_length.values():
                x = torch.tensor([ids[i] for i in rows], dtype=torch.int64)
                for i, row in zip(rows, torch.softmax(logits_of(x), -1).tolist(), strict=True):
                    probs[i] = row
        records: list[dict[str, Any]] = []
        for n, pr in enumerate(probs, start=1):
            if pr is None:
                records.append({"line": n, "label": None, "probabilities": None})
                continue
            best = max(range(len(pr)), key=pr.__getitem__)
            shown = {lab: round(v, 6) for lab, v in zip(labels, pr, strict=True)}
            records.append({"line": n, "label": labels[best], "probabilities": shown})
        return {"model": "m", "records": records}

    return app


class Server:
    def __init__(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "benchmarks.serve", "_server", *args]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = PORT_LINE.search(line)
            if m:
                self.port = int(m.group(1))
                self.http, self.loop = m.group(2), m.group(3)
                break
        else:
            raise RuntimeError(f"server {args} did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr or []], daemon=True).start()

    def batches(self, model: str) -> dict[str, float]:
        """Counters so far for `model`, from /metrics: batches scored and rows in them
        (`count`, `sum`), and each stage's count and seconds (`STAGE count`, `STAGE sum`)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as answer:
            text = answer.read().decode()
        found = {
            k: float(v)
            for k, v in re.findall(
                rf'^bilstm_batch_rows_(count|sum){{model="{model}"}} (\S+)$', text, re.M
            )
        }
        for kind, stage, value in re.findall(
            rf'^bilstm_stage_seconds_(count|sum){{model="{model}",stage="(\w+)"}} (\S+)$',
            text,
            re.M,
        ):
            found[f"{stage} {kind}"] = float(value)
        return found

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(
    server: Server,
    kind: str,
    name: str,
    inputs: list[list[str]],
    clients: int,
    n: int,
    cold: bool = False,
    trim: float = 0.0,
) -> dict[str, Any]:
    """One cell: `n` requests from `clients` closed-loop clients, with the server's batch and
    stage figures over the cell (bilstm servers)."""
    reqs = [request_bytes(PREDICT.format(name), x) for x in inputs]
    before = server.batches(name) if kind == "bilstm" else None
    cell = asyncio.run(load(server.port, reqs, clients, n, server.proc.pid, cold, trim))
    if before is not None:
        cell.update(batch_figures(before, server.batches(name)))
    cell["items_per_s"] = round(cell["rps"] * len(inputs[0]), 1)
    return cell


def median_cell(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median requests/s, and every round's requests/s and p99 (with
    several rounds, servers alternate cell by cell, so that a change in the machine's other
    load falls on all of them)."""
    ranked = sorted(rounds, key=lambda c: c["rps"])
    cell = dict(ranked[(len(ranked) - 1) // 2])
    if len(rounds) > 1:
        cell["rounds"] = {
            "rps": [c["rps"] for c in rounds],
            "p99_ms": [c["p99_ms"] for c in rounds],
            "cpu_ms": [
                round(sum(v for k, v in c["cpu"].items() if k.endswith("_ms")), 4)
                for c in rounds
                if c.get("cpu")
            ],
        }
    return cell


def batch_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Mean rows per batch and mean milliseconds per stage between two `batches` readings."""

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    out: dict[str, Any] = {"mean_batch_rows": round(delta("sum") / max(delta("count"), 1), 1)}
    stages = sorted({k.split()[0] for k in after if " " in k})
    out["stage_mean_ms"] = {
        s: round(delta(f"{s} sum") / max(delta(f"{s} count"), 1) * 1000, 3) for s in stages
    }
    return out


# -- load generator ------------------------------------------------------------------------------


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds each thread of process `pid` has run (thread id -> seconds), from
    /proc/PID/task/TID/schedstat (nanoseconds; empty where /proc has no such file)."""
    out: dict[int, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_per_request(
    pid: int, before: dict[int, float], after: dict[int, float], client_s: float, cell: dict
) -> dict[str, Any]:
    """Milliseconds of CPU per request in a cell: the server's event loop (its main thread),
    its other threads (the scoring worker and ONNX Runtime's), and this load generator; and
    the cores all three kept busy on average."""
    if not after:
        return {}
    delta = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    loop = delta.get(pid, 0.0)
    other = sum(v for tid, v in delta.items() if tid != pid)
    n = max(cell["requests"], 1)
    rate = cell.get("all_rps", cell["rps"])  # the whole cell, as the CPU counters
    wall = n / rate if rate else 0.0
    return {
        "server_loop_ms": round(loop / n * 1000, 4),
        "server_other_threads_ms": round(other / n * 1000, 4),
        "client_ms": round(client_s / n * 1000, 4),
        "cores_busy": round((loop + other + client_s) / wall, 2) if wall else None,
    }


def request_bytes(path: str, texts: list[str]) -> bytes:
    body = json.dumps({"inputs": texts}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _exchange(conn: Connection, request: bytes) -> None:
    """Send one request and read its whole answer (a non-200 answer is an error)."""
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    body = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"status {status}: {body[:200]!r}")


async def _connect(port: int, warm: bytes | None) -> Connection:
    """A keep-alive connection, with one untimed request sent on it if `warm` is given."""
    conn = await asyncio.open_connection("127.0.0.1", port)
    if warm is not None:
        await _exchange(conn, warm)
    return conn


async def _client(
    conn: Connection,
    requests: list[bytes],
    times: list[tuple[float, float]],
    counter: list[int],
    total: int,
) -> None:
    """Send requests one after the other until `total` have been sent by all clients; each
    one's (start, end) goes to `times`."""
    try:
        while counter[0] < total:
            i = counter[0]
            counter[0] += 1
            start = time.perf_counter()
            await _exchange(conn, requests[i % len(requests)])
            times.append((start, time.perf_counter()))
    finally:
        conn[1].close()


async def load(
    port: int,
    requests: list[bytes],
    clients: int,
    total: int,
    pid: int,
    cold: bool = False,
    trim: float = 0.0,
) -> dict[str, Any]:
    """One closed-loop cell. By default every client's connection is open and has answered
    one request before the clock starts (the steady state); `cold`: the connections are
    opened at the start, as in this script's runs before 2026-11-27 07:30 UTC."""
    warm_up = [await _connect(port, None) for _ in range(min(clients, 8))]
    await asyncio.gather(*(_client(c, requests, [], [0], 20 // clients + 1) for c in warm_up))
    conns: list[Connection] = []
    if not cold:
        conns = await asyncio.gather(
            *(_connect(port, requests[-1 - i % len(requests)]) for i in range(clients))
        )
    times: list[tuple[float, float]] = []
    counter = [0]
    cpu_before, client_before = thread_cpu(pid), time.process_time()
    start = time.perf_counter()
    if cold:
        conns = await asyncio.gather(*(_connect(port, None) for _ in range(clients)))
    await asyncio.gather(*(_client(c, requests, times, counter, total) for c in conns))
    end = time.perf_counter()
    client_s = time.process_time() - client_before
    cell = cell_figures(times, start, end, trim)
    cell["cpu"] = cpu_per_request(pid, cpu_before, thread_cpu(pid), client_s, cell)
    return cell


def cell_figures(
    times: list[tuple[float, float]], start: float, end: float, trim: float
) -> dict[str, Any]:
    """Requests/s and latency quantiles of the requests that ended in the cell's steady
    part: its wall time less `trim` of it at each end (all clients firing at once at the
    start, fewer and fewer clients at the end); `all_*`: every request, the whole cell."""
    lo, hi = start + trim * (end - start), end - trim * (end - start)
    steady = [b - a for a, b in times if lo <= b <= hi]
    every = [b - a for a, b in times]
    if not steady:
        steady, lo, hi = every, start, end
    return {
        "requests": len(every),
        "rps": round(len(steady) / (hi - lo), 1),
        "p50_ms": round(quantile(steady, 0.5) * 1000, 2),
        "p90_ms": round(quantile(steady, 0.9) * 1000, 2),
        "p99_ms": round(quantile(steady, 0.99) * 1000, 2),
        "max_ms": round(max(steady) * 1000, 2),
        "steady_requests": len(steady),
        "all_rps": round(len(every) / (end - start), 1),
        "all_p99_ms": round(quantile(every, 0.99) * 1000, 2),
    }


# -- profile -----------------------------------------------------------------------------------


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or bin_path("py-spy")
    if not Path(spy).exists() and shutil.which(spy) is None:
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    cmd = [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "250", "--threads"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches
    return proc


def stop_profile(proc: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[re.sub(r"\s*\(\d+\)", "", frames[0])] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n

    def share(counter: collections.Counter[str], k: int) -> list[list[Any]]:
        return [[f, round(n / max(total, 1), 3)] for f, n in counter.most_common(k)]

    return {
        "samples": total,
        "threads": share(threads, 6),
        "self": share(own, 15),
        "inclusive": share(inclusive, 40),
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


def bilstm_run_items(model: Path, texts: list[str], threads: int, rounds: int) -> dict[str, Any]:
    """bilstm-run's scoring-only items/s (median of `rounds`) on a file of `texts`."""
    with tempfile.TemporaryDirectory(prefix="bilstm-serve-run-") as tmp:
        src = Path(tmp) / "in.txt"
        src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        cmd = [bin_path("bilstm-run"), str(model), str(src), "--threads", str(threads)]
        seconds = []
        for _ in range(rounds):
            done = subprocess.run(
                [*cmd, "--output", str(Path(tmp) / "out.jsonl")], capture_output=True, text=True
            )
            found = SUMMARY.findall(done.stderr)
            if done.returncode != 0 or not found:
                raise RuntimeError(f"{cmd} failed: {done.stderr[-500:]}")
            seconds.append(float(found[-1][1]))
            (Path(tmp) / "out.jsonl").unlink()
    return {
        "command": ["bilstm-run", "MODEL", "INPUT", "--threads", str(threads)],
        "lines": len(texts),
        "scoring_s": seconds,
        "items_per_s": round(len(texts) / median(seconds), 1),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_server"]:
        _server_main(argv[1:])
        return 0
    p = parser("serve", __doc__.splitlines()[0] if __doc__ else None)
    p.set_defaults(threads=1)
    p.add_argument("--requests", type=int, default=500, help="requests per cell")
    p.add_argument("--concurrency", default="1,8,64")
    p.add_argument("--batch-texts", type=int, default=32, help="texts per request, 2nd part")
    p.add_argument("--batch-requests", type=int, default=150, help="requests per cell, 2nd part")
    p.add_argument("--batch-concurrency", default="1,8")
    p.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    p.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    p.add_argument("--profile", type=Path, default=None, metavar="DIR")
    p.add_argument(
        "--variants",
        default="",
        help="extra servers (ceiling and batching on, one-text cells), ';'-separated, each "
        "space-separated server flags: 'http=h11 loop=asyncio' (uvicorn's pure-Python stack), "
        "switch-interval-ms=0.5 (Python's GIL switch interval), scoring-batch=16 (rows per ORT "
        "call for text models), access-log=1 (the JSON access log on stderr)",
    )
    p.add_argument("--server-lifetime", type=float, default=900)
    p.add_argument(
        "--cold-connections",
        action="store_true",
        help="open the clients' connections when a cell's clock starts (their first requests "
        "then wait behind 64 connection set-ups); by default they are open and have answered "
        "one request before it starts",
    )
    p.add_argument(
        "--trim",
        type=float,
        default=0.1,
        help="share of each cell's wall time left out at each end for requests/s and "
        "latencies (the burst of all clients starting at once, the last clients alone); "
        "0: the whole cell (the figures under all_rps and all_p99_ms)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with more than 1, every server is started at once and every cell runs this "
        "many times, server after server, each cell reporting its median round by requests/s "
        "(on a shared machine a burst of other load then falls on all servers)",
    )
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"what to measure, ','-separated among {','.join(PARTS)} (default all): the "
        "ceiling, batching on, batching off, the PyTorch endpoint (one-text cells), the "
        "requests of --batch-texts texts, and bilstm-run's scoring-only reference",
    )
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        p.error(f"--parts: unknown {sorted(parts - set(PARTS))}; choose among {PARTS}")
    clients = [int(c) for c in args.concurrency.split(",")]
    batch_clients = [int(c) for c in args.batch_concurrency.split(",")]
    total, batch_total = args.requests, args.batch_requests
    if args.smoke:
        clients, batch_clients, total, batch_total = [1, 8], [1], 40, 10
    machine = machine_info(args.wait_quiet)
    texts = [t for _, t in read_tsv(SHARED_DEV)] if SHARED_DEV.exists() and not args.smoke else []
    k = args.batch_texts
    cells: dict[str, dict[str, Any]] = {}
    batch_cells: dict[str, dict[str, Any]] = {}
    profile: dict[str, Any] = {}
    stack: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bilstm-serve-bench-") as tmp:
        model, ckpt = build_model(Path(tmp), args.smoke)
        if not texts:
            texts = [t for _, t in read_tsv(Path(tmp) / "dev.tsv")]
        singles = [[t] for t in texts]
        groups = [(texts * (k // len(texts) + 2))[i : i + k] for i in range(0, len(texts), k)]
        common = ("--threads", str(args.threads), "--lifetime", str(args.server_lifetime))
        common += ("--http", args.http, "--loop", args.loop)
        plans = [
            (
                ("bilstm", str(model), *common),
                [
                    ("ceiling", "constant", singles, clients, total, cells),
                    ("batching on", "m", singles, clients, total, cells),
                    ("batching on", "m", groups, batch_clients, batch_total, batch_cells),
                ],
            ),
            (
                ("bilstm", str(model), "--max-batch", "1", *common),
                [
                    ("batching off", "m", singles, clients, total, cells),
                    ("batching off", "m", groups, batch_clients, batch_total, batch_cells),
                ],
            ),
            (
                ("torch", str(ckpt), *common),
                [
                    ("torch (FastAPI, per request)", "m", singles, clients, total, cells),
                    ("torch (FastAPI, per request)", "m", groups, batch_clients, batch_total,
                     batch_cells),
                ],
            ),
        ]  # fmt: skip
        for variant in filter(None, args.variants.split(";")):
            flags = [f"--{f}" if not i % 2 else f for x in variant.split() for i, f in
                     enumerate(x.partition("=")[::2])]  # fmt: skip
            shown = " ".join(flags)
            plans.insert(
                1,
                (
                    ("bilstm", str(model), *common, *flags),  # the variant's flags win
                    [
                        (f"ceiling, {shown}", "constant", singles, clients, total, cells),
                        (f"batching on, {shown}", "m", singles, clients, total, cells),
                    ],
                ),
            )
        plans = [
            (a, [r for r in rs if wanted(r[0], r[5] is batch_cells, parts)]) for a, rs in plans
        ]
        plans = [(a, rs) for a, rs in plans if rs]
        seen: dict[str, dict[str, list[dict[str, Any]]]] = {}
        started: dict[int, Server] = {}
        try:
            for round_ in range(args.rounds):
                for i, (server_args, routes) in enumerate(plans):
                    if i not in started:
                        started[i] = Server(*server_args)
                    server = started[i]
                    stack.setdefault(routes[0][0], f"{server.http}, {server.loop}")
                    for label, name, inputs, counts, n, table in routes:
                        for c in counts:
                            spy = None
                            if args.profile and not round_ and label == "batching on":
                                if table is cells and c == max(clients):
                                    args.profile.mkdir(parents=True, exist_ok=True)
                                    out = args.profile / f"serve-batching-on-{c}.txt"
                                    spy = start_profile(server.proc.pid, out)
                            cell = measure(
                                server,
                                server_args[0],
                                name,
                                inputs,
                                c,
                                n,
                                args.cold_connections,
                                args.trim,
                            )
                            if spy is not None:
                                profile = {
                                    "cell": f"{label}, {c} clients",
                                    **stop_profile(spy, out),
                                }
                            key = f"{'many' if table is batch_cells else 'one'}:{label}"
                            seen.setdefault(key, {}).setdefault(str(c), []).append(cell)
                            table.setdefault(label, {})[str(c)] = median_cell(seen[key][str(c)])
                            size = len(inputs[0])
                            print(f"{label:30s} x{size:<3d} c={c:3d} {cell}", file=sys.stderr)
                    if args.rounds == 1:
                        started.pop(i).stop()
        finally:
            for server in started.values():
                server.stop()
        reference: dict[str, Any] = {}
        if "run" in parts:
            run_texts = [t for g in groups for t in g] * max(1, 3200 // (len(groups) * k))
            reference = bilstm_run_items(model, run_texts, args.threads, 1 if args.smoke else 3)
            print(f"bilstm-run scoring only: {reference}", file=sys.stderr)
    targets = assess(cells, batch_cells, reference, clients, batch_clients)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    save(
        "serve",
        args,
        argv,
        {
            "requests_per_cell": total,
            "concurrency": clients,
            "server_threads": args.threads,
            "http_stack": stack,  # first cell of each server -> uvicorn's protocol, event loop
            "cells": cells,
            "batch_texts": k,
            "batch_requests_per_cell": batch_total,
            "batch_concurrency": batch_clients,
            "batch_cells": batch_cells,
            "bilstm_run": reference,
            "targets": targets,
            "profile": profile,
        },
        machine,
    )
    print(render(cells, clients))
    print()
    print(render(batch_cells, batch_clients, items=True))
    if reference:
        print(f"\nbilstm-run scoring only: {reference['items_per_s']:,.0f} items/s")
    for t in targets:
        print(f"- {t['target']}: {t['value']} ({'met' if t['met'] else 'missed'})")
    return 0


def wanted(label: str, batch: bool, parts: set[str]) -> bool:
    """Whether a server's cells are among `--parts`."""
    if batch:
        return "batch" in parts
    if label.startswith("torch"):
        return "torch" in parts
    return PART_OF.get(label.split(",")[0], "") in parts


def assess(
    cells: dict[str, dict[str, Any]],
    batch_cells: dict[str, dict[str, Any]],
    reference: dict[str, Any],
    clients: list[int],
    batch_clients: list[int],
) -> list[dict[str, Any]]:
    """The issue's targets, at the highest concurrency, with the better bilstm setting named."""
    top = str(max(clients))
    out: list[dict[str, Any]] = []
    for label in ("batching on", "batching off"):
        mine = cells.get(label, {}).get(top)
        ceiling = cells.get("ceiling", {}).get(top)
        torch = cells.get("torch (FastAPI, per request)", {}).get(top)
        if not mine or not ceiling or not torch:
            continue
        share = mine["rps"] / ceiling["rps"]
        ratio = mine["rps"] / torch["rps"]
        out += [
            {
                "target": f"{label}, {top} clients: >= 70% of the ceiling's requests/s",
                "value": f"{share:.0%}",
                "met": share >= 0.7,
            },
            {
                "target": f"{label}, {top} clients: >= 2x the PyTorch endpoint",
                "value": f"{ratio:.2f}x",
                "met": ratio >= 2.0,
            },
            {
                "target": f"{label}, {top} clients: p99 <= 50 ms",
                "value": f"{mine['p99_ms']:.1f} ms",
                "met": mine["p99_ms"] <= 50,
            },
        ]
    for c in batch_clients:
        mine = batch_cells.get("batching on", {}).get(str(c))
        if mine and reference:
            share = mine["items_per_s"] / reference["items_per_s"]
            out.append(
                {
                    "target": f"requests of many texts, {c} clients: items/s >= 80% of "
                    "bilstm-run's scoring-only items/s",
                    "value": f"{share:.0%}",
                    "met": share >= 0.8,
                }
            )
    return out


def render(cells: dict[str, dict[str, Any]], clients: list[int], items: bool = False) -> str:
    what = "items/s" if items else "req/s"
    head = "| server | " + " | ".join(f"{c} clients: {what}, p50, p99 (ms)" for c in clients)
    rows = [head + " |", "| --- |" + " --- |" * len(clients)]
    key = "items_per_s" if items else "rps"
    for label, by_c in cells.items():
        parts = [
            "{:,.0f}, {:.1f}, {:.1f}".format(
                by_c[str(c)][key], by_c[str(c)]["p50_ms"], by_c[str(c)]["p99_ms"]
            )
            for c in clients
        ]
        rows.append(f"| {label} | " + " | ".join(parts) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
