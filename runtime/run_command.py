"""What `bilstm-run` (and `bilstm run`) does once its arguments are parsed: open the model,
check the options against its task, score the input, write the records.

This module imports no command-line library: `bilstm-run` parses an ordinary command line
with `bilstm.runtime.run_args` and comes straight here, and the Typer command in
`bilstm.runtime.commands` (help, usage errors, `bilstm run`) calls the same `execute`.

Results go to stdout (or --output), diagnostics and progress to stderr. Exit codes: 0 ok,
1 some records failed, 2 usage/model/data error, 130 interrupted, 141 closed pipe, 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from bilstm.core.errors import BiLSTMError
from bilstm.core.reader import DEFAULT_MAX_DELAY_MS, DEFAULT_MAX_LINE_BYTES
from bilstm.runtime.model import BiLSTM, Reading
from bilstm.runtime.output import Format, RecordWriter, atomic_output
from bilstm.runtime.session import Device, Optimization
from bilstm.runtime.taskspec import RunOptions

if TYPE_CHECKING:
    from bilstm.runtime.sharding import Shard
    from bilstm.runtime.workers import ModelSource

EXIT_RECORD_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `cat` gives when the reader of its output quits
EXIT_TERMINATED = 143
GENERIC_SUFFIXES = (".npz", ".npy", ".json")
# Tensor input (generic mode) runs the graph as it is: none of the record options apply.
GENERIC_IGNORES = (
    "top_k",
    "probabilities",
    "tokenize",
    "rolling",
    "anomalies",
    "threshold",
    "shard",
    "chunk_size",
    "on_error",
    "max_line_bytes",
    "max_delay_ms",
    "follow",
    "fmt",
    "batch_size",
    "warmup",
    "profile",
    "optimized_model",
    "workers",
)


class Tokenize(str, Enum):
    """How a tag model splits an input line into tokens."""

    spaces = "spaces"
    words = "words"


class OnError(str, Enum):
    """What `bilstm-run` does with a line it cannot use."""

    record = "record"
    stop = "stop"


class RunArgs(NamedTuple):
    """The parameters of `bilstm-run`, named as the command's options (`fmt` is --format).

    The defaults here are the command's defaults: the Typer command takes them from this
    class, and tests check that both parsers give the same `RunArgs` for a command line.
    (A named tuple, not a dataclass: it is built at every start, in a third of the time.)
    """

    model: str
    input: str
    output: Path | None = None
    fmt: Format = Format.jsonl
    probabilities: bool = True
    top_k: int = 5
    tokenize: Tokenize = Tokenize.spaces
    rolling: bool = False
    anomalies: bool = False
    threshold: float = 3.0
    follow: bool = False
    batch_size: int | None = None
    chunk_size: int = 4096
    shard: str | None = None
    on_error: OnError = OnError.record
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_delay_ms: float = DEFAULT_MAX_DELAY_MS
    device: Device = Device.auto
    device_id: int = 0
    threads: int | None = None
    workers: int = 1
    optimization: Optimization = Optimization.all
    warmup: int = 0
    profile: Path | None = None
    optimized_model: Path | None = None
    quiet: bool = False
    debug: bool = False


def stderr_line(message: str) -> None:
    """One diagnostic line on stderr (results never go there; nothing if stderr is closed)."""
    if sys.stderr is not None:  # print(file=None) would write to stdout
        print(message, file=sys.stderr, flush=True)


def setup_logging(quiet: bool, debug: bool) -> None:
    """The `bilstm` logger on stderr at the level the flags ask for, ONNX Runtime's quieter."""
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr)
    logging.getLogger("bilstm").setLevel(level)
    # ONNX Runtime's own log: its warnings (copy-node placement hints, execution provider
    # notices, printed on every CUDA run) speak to whoever built the graph; --debug shows them.
    import onnxruntime as ort

    ort.set_default_logger_severity(2 if debug else 3)


@contextlib.contextmanager
def user_errors(debug: bool, output: Path | None = None) -> Iterator[None]:
    """Turn `BiLSTMError` into a one-line message and exit 2 (the traceback with --debug).

    `output`: the command's output file, if any; the interruption message says what became
    of it (records already printed to stdout cannot be taken back, so it does not claim that).
    The exit is a `SystemExit`, which leaves a Typer command and a plain `bilstm-run` alike.
    """
    try:
        yield
    except BiLSTMError as exc:
        if debug:
            raise
        stderr_line(f"error: {exc}")
        raise SystemExit(EXIT_USAGE) from None
    except BrokenPipeError:
        quiet_broken_pipe()
        raise SystemExit(EXIT_BROKEN_PIPE) from None
    except Terminated:
        stderr_line(f"terminated (SIGTERM): {_unwritten(output)}")
        raise SystemExit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        stderr_line(f"interrupted: {_unwritten(output)}")
        raise SystemExit(EXIT_INTERRUPTED) from None


def _unwritten(output: Path | None) -> str:
    if output is None:
        return "stopped; the records printed so far are complete, the rest were not scored"
    return f"{output} was not written (an existing file there is unchanged)"


def quiet_broken_pipe() -> None:
    """The reader of stdout quit (`| head`): stop quietly, without a traceback at exit.

    Python would still try to flush stdout at exit and print an error; pointing the file
    descriptor at /dev/null makes that flush a no-op.
    """
    import os

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that partial output is cleaned up on the way out."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Any]:
    """A records counter with rate on stderr (only when it is a terminal and not --quiet)."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.completed:,} records {task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("run", total=None, rate=0.0)
        started = time.perf_counter()

        def advance(n: int) -> None:
            done = bar.tasks[0].completed + n
            bar.update(task, completed=done, rate=done / max(time.perf_counter() - started, 1e-9))

        yield advance


def _run_generic(args: RunArgs) -> None:
    """Tensors in, tensors out, for any ONNX model (bilstm metadata not needed)."""
    import numpy as np

    from bilstm.core.atomic import atomic_path
    from bilstm.runtime.builtin import resolve_model
    from bilstm.runtime.generic import load_tensors, run_generic, to_json
    from bilstm.runtime.session import create_session

    session = create_session(
        resolve_model(args.model),
        device=args.device,
        device_id=args.device_id,
        threads=args.threads,
        optimization=args.optimization,
    )
    outputs = run_generic(session, load_tensors(Path(args.input), session))
    output = args.output
    if output is not None and output.suffix.lower() == ".npz":
        with atomic_path(output) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **outputs)  # type: ignore[arg-type]
        return
    with atomic_output(output) as handle:
        handle.write(to_json(outputs) + "\n")


def execute(args: RunArgs, given: Iterable[str], shard_of: Shard | None = None) -> int:
    """Run `bilstm-run` with parsed arguments; the exit status (0, or 1 when some records
    failed). `given`: the parameters set on the command line (not left at their defaults);
    `shard_of`: `args.shard` parsed. Usage, model and data errors exit through `user_errors`.
    """
    given = set(given)
    with user_errors(args.debug, args.output), sigterm_raises():
        _check_paths(args.model, args.input, args.output, args.profile, args.optimized_model)
        if "device_id" in given and args.device is Device.cpu:
            raise BiLSTMError(
                "--device-id selects a CUDA device; it does not apply to --device cpu"
            )
        if Path(args.input).suffix.lower() in GENERIC_SUFFIXES:
            _refuse_options(given, GENERIC_IGNORES, "tensor input (.npz/.npy/.json)")
            _run_generic(args)
            return 0
        bilstm = BiLSTM.load(
            args.model,
            device=args.device,
            device_id=args.device_id,
            threads=args.threads,
            optimization=args.optimization,
            optimized_model_path=args.optimized_model,
            profile_prefix=str(args.profile) if args.profile else None,
        )
        _check_task_options(given, bilstm, args.anomalies, args.follow)
        batch_size = bilstm.batch_size if args.batch_size is None else args.batch_size
        pool = None
        if args.workers > 1:
            if args.profile is not None:
                raise BiLSTMError(
                    "--profile records one ONNX Runtime session; with --workers each worker "
                    "has its own. Profile with --workers 1"
                )
            from bilstm.runtime.workers import default_threads

            pool = bilstm.worker_source(args.threads or default_threads(args.workers), args.warmup)
        else:
            bilstm.warmup(args.warmup)
        opts = RunOptions(
            batch_size,
            top_k=args.top_k,
            probabilities=args.probabilities,
            tokenize=args.tokenize.value,
            rolling=args.rolling,
            anomalies=args.anomalies,
            threshold=args.threshold,
            follow=args.follow,
        )
        reading = Reading(args.chunk_size, args.max_line_bytes, shard_of, args.max_delay_ms)
        failed = _score(
            bilstm,
            args.input,
            args.output,
            args.fmt,
            opts,
            reading,
            args.on_error,
            args.quiet,
            pool,
            args.workers,
        )
        if args.profile:
            _report_profile(bilstm.session.end_profiling())
    return EXIT_RECORD_ERRORS if failed else 0


def _score(
    model: BiLSTM,
    source: str,
    output: Path | None,
    fmt: Format,
    opts: RunOptions,
    reading: Reading,
    on_error: OnError,
    quiet: bool,
    pool: ModelSource | None = None,
    workers: int = 1,
) -> int:
    """Write `source`'s records, chunk by chunk; the number of error records. With `pool`
    (how each worker opens the model) and `workers` > 1, chunks are scored by worker
    processes, which also render JSONL/TSV lines (the records need not travel back)."""
    show = not quiet and sys.stderr.isatty()
    start = time.perf_counter()
    count = failed = 0
    with atomic_output(output) as handle, _progress(show) as advance:
        columns = model.tsv_columns(opts)
        writer = RecordWriter(handle, fmt, columns)
        rendering = None
        if pool is not None and workers > 1 and fmt is not Format.table:
            from bilstm.runtime.workers import Rendering

            rendering = Rendering(fmt.value, tuple(columns))
        for part in model.chunk_results(source, opts, reading, pool, workers, rendering):
            bad = part.first_error
            if bad is not None and on_error is OnError.stop:
                where = bad.get("line", bad.get("row"))
                raise BiLSTMError(f"{source}:{where}: {bad['error']} (--on-error stop)")
            if part.text is not None:
                handle.write(part.text)
            else:
                writer.write_many(part.records or [])
                writer.flush()
            handle.flush()  # each chunk is out as soon as it is scored (live input waits)
            count += part.size
            failed += part.errors
            advance(part.size)
    if not quiet:
        elapsed = time.perf_counter() - start
        rate = count / elapsed if elapsed > 0 else 0.0
        where = model.providers[0] + (f", {workers} workers" if pool and workers > 1 else "")
        stderr_line(f"{count} records, {failed} errors, {elapsed:.2f} s ({rate:,.0f}/s) on {where}")
    return failed


def flag(name: str) -> str:
    """The command-line spelling of a parameter name."""
    return {"fmt": "--format", "probabilities": "--no-probabilities"}.get(
        name, "--" + name.replace("_", "-")
    )


def _refuse_options(given: set[str], names: Iterable[str], what: str) -> None:
    wrong = [flag(n) for n in names if n in given]
    if wrong:
        raise BiLSTMError(f"{', '.join(wrong)}: not used for {what}; leave the option out")


def _check_task_options(given: set[str], model: BiLSTM, anomalies: bool, follow: bool) -> None:
    """Refuse options that would be silently ignored for this model's task: each task's
    adapter lists the options it reads."""
    from bilstm.runtime.tasks import MODEL_CLASSES

    for name in sorted(given):
        owners = [cls.SPEC.name for cls in MODEL_CLASSES.values() if name in cls.SPEC.run_options]
        if owners and name not in model.SPEC.run_options:
            raise BiLSTMError(
                f"{flag(name)} applies to {'/'.join(sorted(owners))} models; this model's task "
                f"is {model.task}. Leave the option out"
            )
    if "anomalies" in given and anomalies and "rolling" not in given and not follow:
        raise BiLSTMError(
            "--anomalies compares each window's forecast with the actual values: it needs "
            "--rolling (one forecast per window) or --follow (online)"
        )
    if "threshold" in given and not anomalies:
        raise BiLSTMError("--threshold sets the anomaly cut-off: it needs --anomalies --rolling")
    online = [flag(n) for n in ("max_delay_ms", "on_error", "max_line_bytes") if n in given]
    if online and "follow" in model.SPEC.run_options and not follow:
        raise BiLSTMError(
            f"{', '.join(online)}: applies to rows read as they arrive: it needs --follow "
            "(without it the whole CSV is read, and a bad row stops the run)"
        )


def _check_paths(
    model: str,
    source: str,
    output: Path | None,
    profile: Path | None,
    optimized_model: Path | None,
) -> None:
    """Check every path the run writes before any work: nothing it did not create is lost."""
    from bilstm.core.outpaths import check_output_file
    from bilstm.core.reader import STDIN

    inputs = [p for p in (model, source) if p != STDIN and Path(p).exists()]
    if output is not None:
        check_output_file(output, inputs, flag="--output")
    if optimized_model is not None:
        check_output_file(
            optimized_model,
            [*inputs, *([output] if output else [])],
            flag="--optimized-model",
        )
    if profile is not None:
        folder = profile.resolve().parent
        if profile.is_dir() or not folder.is_dir():
            raise BiLSTMError(
                f"--profile {profile}: the prefix must name a file in an existing folder "
                f"(ONNX Runtime writes {profile}_<date>.json); create {folder} first"
            )


def _report_profile(path: str) -> None:
    """Say where ONNX Runtime wrote its profile, or that it did not."""
    if not path or not Path(path).is_file():
        raise BiLSTMError(
            f"ONNX Runtime did not write the profile file ({path or 'no name given'}); the "
            "records are complete"
        )
    stderr_line(f"profile written to {path}")
