"""Live input: per-record latency of `bilstm-run` on a pipe fed at a steady rate, and file
throughput of the same build.

A writer thread feeds `bilstm-run MODEL -` one line at a time at R lines/s (10, 100, 1,000)
and notes when each line was written; the reader notes when each record arrived; latency is
the difference (p50/p99 over all records after the first). Runs each `--max-delay-ms` given.
`--follow` forecasting (elecdemand-h1, rows of examples/demand.csv repeated) is timed the
same way. File throughput: `bilstm-run sentiment FILE -o out.jsonl` on a text file,
interleaved with the same command of a baseline source tree (`--baseline DIR`, e.g. a
`git archive` of the commit before), best of N.

    python -m benchmarks.live --threads 1
    python -m benchmarks.live --threads 1 --baseline /tmp/base  # with file throughput
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import _common as c

NAME = "live"
TEXT = "a gorgeous, witty and seductive movie that never lets up"
DEMAND = c.REPO / "examples" / "demand.csv"


def _command(args: Sequence[str], source: Path | None) -> tuple[list[str], dict[str, str]]:
    """`bilstm-run ARGS` from this tree, or from `source` (a copy of another commit)."""
    env = dict(os.environ)
    if source is None:
        return [c.bin_path("bilstm-run"), *args], env
    pkg = Path(tempfile.mkdtemp(prefix="bilstm-base-"))
    (pkg / "bilstm").symlink_to(source.resolve())
    env["PYTHONPATH"] = str(pkg)
    code = "from bilstm.runtime.cli import run_main; run_main()"
    return [sys.executable, "-c", code, *args], env


def live_latency(
    args: Sequence[str], lines: Sequence[str], rate: float, warm: int
) -> dict[str, Any]:
    """Feed `lines` at `rate` per second after `warm` lines sent at once; latency per record."""
    cmd, env = _command(args, None)
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    sent: list[float] = []
    expected = len(lines) - warm

    def writer() -> None:
        assert proc.stdin is not None
        proc.stdin.write("".join(lines[:warm]).encode())
        proc.stdin.flush()
        time.sleep(2.0)  # model loaded and warm before the timed lines
        start = time.monotonic()
        for i, line in enumerate(lines[warm:]):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent.append(time.monotonic())
            proc.stdin.write(line.encode())
            proc.stdin.flush()
        proc.stdin.close()

    thread = threading.Thread(target=writer)
    thread.start()
    got: list[float] = []
    for raw in proc.stdout:
        record = json.loads(raw)
        key = record.get("line", record.get("row"))
        if "forecast" in record or "label" in record:
            got.append(time.monotonic())
        del key
    thread.join()
    proc.wait()
    timed = got[-expected:]
    latency = [(r - s) * 1000 for s, r in zip(sent, timed, strict=True)][1:]
    return {
        "rate": rate,
        "records": len(latency),
        "p50_ms": round(c.quantile(latency, 0.5), 2),
        "p99_ms": round(c.quantile(latency, 0.99), 2),
        "max_ms": round(max(latency), 2),
    }


def file_throughput(path: Path, threads: int, rounds: int, baseline: Path | None) -> dict[str, Any]:
    """Best-of-`rounds` seconds of `bilstm-run sentiment FILE -o out` for this tree and the
    baseline, interleaved."""
    out = path.with_suffix(".out.jsonl")
    args = ["sentiment", str(path), "-o", str(out), "--threads", str(threads), "-q"]
    # Both sides start the same way (python -c ... with the tree on PYTHONPATH).
    sides = {"this": c.REPO, **({"baseline": baseline} if baseline else {})}
    times: dict[str, list[float]] = {k: [] for k in sides}
    for source in sides.values():  # one untimed run each: files cached, bytecode compiled
        cmd, env = _command(args, source)
        subprocess.run(cmd, check=True, env=env)
    for _ in range(rounds):
        for name, source in sides.items():
            cmd, env = _command(args, source)
            start = time.perf_counter()
            subprocess.run(cmd, check=True, env=env)
            times[name].append(time.perf_counter() - start)
    lines = sum(1 for _ in path.open())
    return {
        name: {"best_s": round(min(v), 3), "median_s": round(c.median(v), 3), "lines": lines}
        for name, v in times.items()
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = c.parser(NAME, __doc__)
    p.add_argument("--rates", default="10,100,1000", help="lines per second")
    p.add_argument("--delays", default="0,20,50", help="--max-delay-ms values")
    p.add_argument("--seconds", type=float, default=3.0, help="timed seconds per rate (min)")
    p.add_argument("--baseline", type=Path, default=None, help="source tree to compare files")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--file-only", action="store_true", help="only the file throughput")
    args = p.parse_args(argv)
    machine = c.machine_info(args.wait_quiet)
    rates = [float(r) for r in args.rates.split(",")]
    delays = [float(d) for d in args.delays.split(",")]
    seconds = 0.5 if args.smoke else args.seconds
    threads = ["--threads", str(args.threads), "--device", "cpu", "-q"]
    results: dict[str, Any] = {"text": [], "follow": []}
    for rate in [] if args.file_only else rates:
        n = max(int(rate * seconds), 20)
        for delay in delays:
            cmd = ["sentiment", "-", "--max-delay-ms", str(delay), *threads]
            row = live_latency(cmd, [TEXT + "\n"] * (n + 1), rate, 1)
            results["text"].append({"max_delay_ms": delay, **row})
            print(f"text {rate:>6}/s delay {delay:>4} ms: {row}", file=sys.stderr)
        rows = DEMAND.read_text().splitlines(keepends=True)
        feed = [rows[0], *(rows[1:] * (n // (len(rows) - 1) + 2))][: 49 + n]
        cmd = ["elecdemand-h1", "-", "--follow", "--anomalies", *threads]
        row = live_latency(cmd, feed, rate, 49)
        results["follow"].append({"max_delay_ms": 20.0, **row})
        print(f"follow {rate:>6}/s: {row}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reviews.txt"
        path.write_text((TEXT + "\n") * (2_000 if args.smoke else 40_000))
        results["file"] = file_throughput(
            path, args.threads, 1 if args.smoke else args.rounds, args.baseline
        )
        print(f"file: {results['file']}", file=sys.stderr)
    c.save(NAME, args, argv, results, machine)


if __name__ == "__main__":
    main()
