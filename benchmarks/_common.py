"""Shared helpers: machine facts, interleaved timing, statistics, result files, tiny assets.

Every benchmark writes one JSON file (default `benchmarks/results/NAME.json`) holding its
numbers, the exact command, and the machine it ran on; `python -m benchmarks.render` turns
those files into `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import data

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SHARED_DEV = REPO.parent / "shared" / "data" / "rt_sentiment" / "dev.tsv"
SHIPPED_MODEL = "sentiment"
TORCH_BASELINE = REPO / "benchmarks" / "torch_baseline.py"
VERSIONED = ("bilstm", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "onnx", "openvino")


# -- machine ----------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that matter here (None: not installed)."""
    out: dict[str, str | None] = {}
    for dist in VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    # the `onnxruntime` module also comes from the onnxruntime-gpu wheel
    out["onnxruntime"] = out["onnxruntime"] or out["onnxruntime-gpu"]
    return out


def git_state() -> dict[str, Any]:
    """Commit of the repository and whether the measured code differs from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "runtime", "models", "export")
    return {"commit": git("rev-parse", "--short", "HEAD"), "code_dirty": bool(dirty)}


def bilstm_source() -> str:
    """Where the imported `bilstm.runtime` lives (editable checkout or an installed copy)."""
    import bilstm.runtime

    return str(Path(bilstm.runtime.__file__).parent)


def machine_info(wait: float = 0.0) -> dict[str, Any]:
    """CPU, cores, memory, Python, versions, date and load: recorded with every result.

    `wait` > 0 first waits up to that many seconds for the machine to go quiet.
    """
    waited = wait_quiet(wait)
    mem = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "waited_for_quiet_s": waited,
        "nice": os.nice(0),
        "git": git_state(),
        "bilstm_source": bilstm_source(),
    }


# -- command line and result files -------------------------------------------------------------


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc)
    p.add_argument("--threads", type=int, default=2, help="threads for every side (default 2)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"result JSON (default benchmarks/results/{name}.json)",
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one round: checks that the script runs"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to drop below 0.5",
    )
    return p


def wait_quiet(seconds: float, threshold: float = 0.5) -> float:
    """Wait (at most `seconds`) until the machine is idle; returns the seconds waited."""
    start = time.monotonic()
    while seconds > 0 and os.getloadavg()[0] >= threshold:
        if time.monotonic() - start >= seconds:
            break
        time.sleep(5)
    return round(time.monotonic() - start, 1)


def add_asset_options(p: argparse.ArgumentParser) -> None:
    """--model/--checkpoint/--data (defaults: the shipped sentiment model and rt_sentiment dev)."""
    p.add_argument("--model", default=None, help="bilstm .onnx (default: built-in sentiment)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="its PyTorch checkpoint (default: the model file's own weights as a checkpoint)",
    )
    p.add_argument("--data", type=Path, default=None, help="label<TAB>text TSV (rt_sentiment dev)")


def command_line(name: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, as a user would type it from the repo root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", f"benchmarks.{name}", *args])


def save(
    name: str,
    args: argparse.Namespace,
    argv: Sequence[str] | None,
    data: dict[str, Any],
    machine: dict[str, Any],
) -> Path:
    """Write the result JSON and return its path."""
    out = args.out
    if out is None:
        if args.smoke:
            out = Path(tempfile.mkdtemp(prefix="bilstm-bench-")) / f"{name}.json"
        else:
            out = RESULTS_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "command": command_line(name, argv),
        "threads": args.threads,
        "smoke": bool(args.smoke),
        "machine": machine,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        **data,
    }
    out.write_text(json.dumps(scrub_paths(doc), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return out


def scrub_paths(value: Any) -> Any:
    """The document with this machine's absolute paths replaced by placeholders.

    Results are committed; they name files relative to the repo (`<repo>`), the temp folder
    (`<tmp>`) or the Python environment (`<python>`), never where this machine keeps them.
    A path is replaced only where it ends (`/tmpfs` is not `<tmp>fs`); keys are scrubbed too.
    """
    places = [
        (str(REPO), "<repo>"),
        (os.path.realpath(tempfile.gettempdir()), "<tmp>"),
        (tempfile.gettempdir(), "<tmp>"),
        (sys.prefix, "<python>"),
        (os.path.expanduser("~"), "~"),
    ]
    patterns = [
        (re.compile(re.escape(path) + r"(?![\w.-])"), name)
        for path, name in sorted(places, key=lambda pair: -len(pair[0]))
        if len(path) > 1
    ]
    if isinstance(value, str):
        for pattern, name in patterns:
            value = pattern.sub(name, value)
        return value
    if isinstance(value, dict):
        return {scrub_paths(k): scrub_paths(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_paths(v) for v in value]
    return value


# -- statistics and timing ---------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    """Median (mean of the middle two for an even count)."""
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and count of timings."""
    return {
        "median": median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None where either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def per_call_seconds(
    fn: Callable[[], Any], budget: float, sync: Callable[[], None] | None = None
) -> float:
    """Mean seconds per call: one warm call, one timed call to size the loop, then a loop
    filling about `budget` seconds. `sync` waits for asynchronous (GPU) work to finish."""
    wait = sync or (lambda: None)
    fn()
    wait()
    start = time.perf_counter()
    fn()
    wait()
    first = time.perf_counter() - start
    calls = max(1, int(budget / max(first, 1e-6)))
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    wait()
    return (time.perf_counter() - start) / calls


def interleave(
    cases: dict[str, Callable[[], Any]], rounds: int, self_timed: bool = False
) -> dict[str, list[float]]:
    """Run the cases in turn, A, B, A, B, ... for `rounds` rounds; seconds per call.

    With `self_timed`, each case returns the seconds it measured itself (e.g. a mean over
    many calls, or a child process's wall time); otherwise the whole call is timed.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            measured = fn()
            elapsed = time.perf_counter() - start
            times[name].append(float(measured) if self_timed else elapsed)
    return times


@dataclass
class ProcessRun:
    """One finished child process."""

    wall_s: float
    max_rss_mib: float
    returncode: int
    stderr: str


def run_process(
    cmd: Sequence[str], stdout: Path | None = None, env: dict[str, str] | None = None
) -> ProcessRun:
    """Run `cmd`, timing it from spawn to exit; peak RSS from the child's own rusage."""
    with tempfile.TemporaryFile() as err:
        out = open(stdout, "wb") if stdout is not None else subprocess.DEVNULL
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(
                list(cmd), stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=REPO
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdout is not None:
                out.close()  # type: ignore[union-attr]
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    # ru_maxrss is KiB on Linux.
    return ProcessRun(wall, usage.ru_maxrss / 1024, proc.returncode, text)


def check(run: ProcessRun, cmd: Sequence[str]) -> ProcessRun:
    """Raise with the child's stderr when it failed."""
    if run.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} exited {run.returncode}:\n{run.stderr[-2000:]}")
    return run


def bin_path(name: str) -> str:
    """A console script installed beside this Python (e.g. bilstm-run)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


# -- data --------------------------------------------------------------------------------------


def read_tsv(path: Path) -> list[tuple[str, str]]:
    """(label, text) pairs of a `label<TAB>text` file; a `label<TAB>text` header is skipped."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (number == 1 and line.strip().lower() == "label\ttext"):
            continue
        label, _, text = line.partition("\t")
        pairs.append((label, text))
    return pairs


def write_lines(texts: Sequence[str], path: Path, count: int | None = None) -> Path:
    """Write `count` lines (the texts repeated as needed; all of them once by default)."""
    n = len(texts) if count is None else count
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(texts[i % len(texts)].replace("\n", " ") + "\n")
    return path


def make_sentiment_tsv(path: Path, n: int, seed: int, max_words: int = 14) -> Path:
    """Synthetic ragged label<TAB>text data where one sentiment word decides the label: the
    test suite's generator (tests/helpers/data.py; tests never import benchmarks, so the one
    copy lives there), with longer texts by default."""
    return data.make_sentiment_tsv(path, n, seed, max_words)


@dataclass
class Assets:
    """A bilstm model, its PyTorch checkpoint and labelled data."""

    model: Path
    checkpoint: Path
    data: Path


def make_tiny_assets(directory: Path, layers: int = 1) -> Assets:
    """Synthetic data, a tiny model trained one epoch with `bilstm train`, and its export."""
    from bilstm.export import export_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    train = make_sentiment_tsv(directory / "train.tsv", 120, seed=1)
    dev = make_sentiment_tsv(directory / "dev.tsv", 60, seed=2)
    ckpt = directory / "tiny"
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
            "--embedding-dim",
            "12",
            "--hidden-size",
            "8",
            "--layers",
            str(layers),
            "--max-length",
            "20",
            "--batch-size",
            "32",
        ]
    )
    model = directory / "tiny.onnx"
    export_checkpoint(ckpt, model)
    return Assets(model=model, checkpoint=ckpt, data=dev)


def train_cli(args: Sequence[str]) -> None:
    """`bilstm train ARGS` in this process (the app `bilstm train` runs)."""
    import contextlib
    import io

    from bilstm.models.cli import app

    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        try:
            app(args=list(args), prog_name="bilstm train", standalone_mode=False)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"bilstm train failed:\n{sink.getvalue()[-2000:]}") from exc


def resolve_assets(args: argparse.Namespace, layers: int = 1) -> Assets:
    """The assets named on the command line; defaults are the shipped model and real data.

    With --smoke and nothing given, a tiny model and data are built in a temp folder.
    """
    if args.smoke and args.model is None and args.checkpoint is None and args.data is None:
        return make_tiny_assets(Path(tempfile.mkdtemp(prefix="bilstm-bench-")), layers)
    from bilstm.runtime.builtin import resolve_model

    model = resolve_model(args.model or SHIPPED_MODEL)
    data = args.data or SHARED_DEV
    for what, path in (("model", model), ("checkpoint", args.checkpoint), ("data", data)):
        if path is not None and not Path(path).exists():
            sys.exit(f"error: {what} {path} does not exist (pass --{what}, or --smoke)")
    checkpoint = args.checkpoint or torch_checkpoint_of(Path(model))
    return Assets(model=Path(model), checkpoint=Path(checkpoint), data=Path(data))


def torch_checkpoint_of(model: Path) -> Path:
    """A checkpoint folder holding exactly the weights of an fp32 bilstm model file.

    The PyTorch side of every comparison runs the shipped weights, not a retrained copy (a
    rebuild on another CPU can differ), and loads them the way PyTorch users load theirs.
    """
    out = Path(tempfile.mkdtemp(prefix="bilstm-bench-")) / f"{model.stem}-torch"
    # In a child process: torch stays out of this one, whose size a child's peak RSS would
    # inherit (ru_maxrss counts the forked copy of the parent).
    code = (
        "import sys; from pathlib import Path; "
        "from benchmarks.torch_baseline import checkpoint_from_onnx; "
        "checkpoint_from_onnx(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    cmd = [sys.executable, "-c", code, str(model), str(out)]
    check(run_process(cmd), cmd)
    return out
