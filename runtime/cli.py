"""Command line of the runtime: `bilstm-run`, and the runtime's commands of the `bilstm`
umbrella (run, eval, info, merge). `bilstm.cli` adds train and export on a full install.

Results go to stdout (or --output), diagnostics and progress to stderr. Exit codes: 0 ok,
1 some records failed, 2 usage/model/data error, 130 interrupted, 141 closed pipe, 143 SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bilstm.core.errors import BiLSTMError
from bilstm.core.reader import DEFAULT_MAX_DELAY_MS, DEFAULT_MAX_LINE_BYTES
from bilstm.runtime.model import BiLSTM, Reading
from bilstm.runtime.output import Format, RecordWriter, atomic_output
from bilstm.runtime.session import Device, Optimization
from bilstm.runtime.taskspec import RunOptions

if TYPE_CHECKING:
    from bilstm.runtime.workers import ModelSource

log = logging.getLogger("bilstm")

EXIT_RECORD_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `cat` gives when the reader of its output quits
EXIT_TERMINATED = 143
GENERIC_SUFFIXES = (".npz", ".npy", ".json")
# Help texts are rich markup: "[train]" would be read as a style tag and vanish, hence "\\[".
TRAINING_HELP = {
    "train": "Train a model (needs the train extra: pip install 'bilstm\\[train]').",
    "export": "Export a checkpoint to ONNX (needs the train extra: pip install 'bilstm\\[train]').",
    "export-module": "Export your own PyTorch module with LSTM/GRU layers to ONNX (needs the "
    "train extra: pip install 'bilstm\\[train]').",
    "import": "Import a model trained in another framework, e.g. Keras (needs the train and "
    "keras extras: pip install 'bilstm\\[train,keras]').",
    "tune": "Search hyper-parameters with Optuna (needs the train and tune extras: "
    "pip install 'bilstm\\[train,tune]').",
}
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


def _stderr(message: str) -> None:
    typer.echo(message, err=True)


def _setup_logging(quiet: bool, debug: bool) -> None:
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
    """
    try:
        yield
    except BiLSTMError as exc:
        if debug:
            raise
        _stderr(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except BrokenPipeError:
        _quiet_broken_pipe()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except Terminated:
        _stderr(f"terminated (SIGTERM): {_unwritten(output)}")
        raise typer.Exit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        _stderr(f"interrupted: {_unwritten(output)}")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _unwritten(output: Path | None) -> str:
    if output is None:
        return "stopped; the records printed so far are complete, the rest were not scored"
    return f"{output} was not written (an existing file there is unchanged)"


def _quiet_broken_pipe() -> None:
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


ModelArg = Annotated[
    str,
    typer.Argument(metavar="MODEL", help="Path to a .onnx or .ort file, or a built-in model name."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")]
DeviceOpt = Annotated[Device, typer.Option(help="Execution device; auto prefers CUDA.")]
ThreadsOpt = Annotated[
    int | None, typer.Option(min=1, help="Intra-op threads (default: one per core).")
]


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


def _run_generic(
    model: str,
    source: Path,
    output: Path | None,
    device: Device,
    device_id: int,
    threads: int | None,
    optimization: Optimization,
) -> None:
    """Tensors in, tensors out, for any ONNX model (bilstm metadata not needed)."""
    import numpy as np

    from bilstm.core.atomic import atomic_path
    from bilstm.runtime.builtin import resolve_model
    from bilstm.runtime.generic import load_tensors, run_generic, to_json
    from bilstm.runtime.session import create_session

    session = create_session(
        resolve_model(model),
        device=device,
        device_id=device_id,
        threads=threads,
        optimization=optimization,
    )
    outputs = run_generic(session, load_tensors(source, session))
    if output is not None and output.suffix.lower() == ".npz":
        with atomic_path(output) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **outputs)  # type: ignore[arg-type]
        return
    with atomic_output(output) as handle:
        handle.write(to_json(outputs) + "\n")


class Tokenize(str, Enum):
    """How a tag model splits an input line into tokens."""

    spaces = "spaces"
    words = "words"


class OnError(str, Enum):
    """What `bilstm-run` does with a line it cannot use."""

    record = "record"
    stop = "stop"


def run(
    ctx: typer.Context,
    model: ModelArg,
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT", help="Input file (text lines, or CSV for forecast); - for stdin."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write here (atomically), not stdout. Never the input file itself.",
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.jsonl,
    probabilities: Annotated[
        bool, typer.Option(help="Include probabilities (classify) or confidences (tag).")
    ] = True,
    top_k: Annotated[int, typer.Option(min=1, help="Candidate words per blank (cloze).")] = 5,
    tokenize: Annotated[
        Tokenize,
        typer.Option(
            help="tag: spaces = the line is tokens separated by whitespace (as CoNLL-U "
            "training data); words = raw text, split into words and punctuation."
        ),
    ] = Tokenize.spaces,
    rolling: Annotated[
        bool, typer.Option(help="Forecast: a forecast for every window, not just the last.")
    ] = False,
    anomalies: Annotated[
        bool,
        typer.Option(help="Forecast: flag actual values far from the forecast (needs --rolling)."),
    ] = False,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, help="Anomaly threshold in residual standard deviations (--anomalies)."
        ),
    ] = 3.0,
    follow: Annotated[
        bool,
        typer.Option(
            help="Forecast online: a forecast as each row arrives, and with --anomalies each "
            "row checked against the forecasts made for it (for `tail -f FILE | ...`)."
        ),
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Inputs per inference batch \\[default: 64 on CPU, 1024 on CUDA]."
        ),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Lines read, sorted by length and scored at a time.")
    ] = 4096,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Score only chunks I, I+N, I+2N... (0-based; merge with `bilstm merge`).",
        ),
    ] = None,
    on_error: Annotated[
        OnError,
        typer.Option(help="record: an error record for a bad line; stop: abort the run."),
    ] = OnError.record,
    max_line_bytes: Annotated[
        int, typer.Option(min=1, help="Longer lines get an error record.")
    ] = DEFAULT_MAX_LINE_BYTES,
    max_delay_ms: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Live input (pipe, terminal): score what has arrived once a line has waited "
            "this long for its chunk to fill (0: as soon as no more input is ready). Files "
            "are read in full chunks.",
        ),
    ] = DEFAULT_MAX_DELAY_MS,
    device: DeviceOpt = Device.auto,
    device_id: Annotated[
        int, typer.Option(min=0, help="CUDA device id (with --device cuda or auto).")
    ] = 0,
    threads: ThreadsOpt = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes scoring chunks side by side, each with its own ONNX "
            "Runtime session of --threads intra-op threads (default with workers: the cores "
            "shared out); input order is kept. Text models.",
        ),
    ] = 1,
    optimization: Annotated[
        Optimization, typer.Option(help="ONNX Runtime graph optimisation level.")
    ] = Optimization.all,
    warmup: Annotated[
        int, typer.Option(min=0, help="Run this many warm-up inferences before scoring.")
    ] = 0,
    profile: Annotated[
        Path | None,
        typer.Option(
            metavar="PREFIX",
            help="Write ONNX Runtime's profile (JSON) to PREFIX_<date>.json.",
        ),
    ] = None,
    optimized_model: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Save the ONNX Runtime-optimised graph here (inspection or reuse).",
        ),
    ] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run MODEL on INPUT; one output record per input line (or window), in order.

    classify/tag/cloze: one text per line (tag: whitespace-separated tokens; cloze: a line
    with one ___ blank). A line without tokens gets label null (classify) or empty lists.
    A line that cannot be read (invalid UTF-8, too long) gets an error record, or stops the
    run with --on-error stop. forecast: a CSV with the model's columns.
    """
    _setup_logging(quiet, debug)
    shard_of = None
    if shard is not None:
        from bilstm.runtime.sharding import parse_shard

        try:
            shard_of = parse_shard(shard)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--shard") from None
    given = {name for name in ctx.params if _given(ctx, name)}
    with user_errors(debug, output), sigterm_raises():
        _check_paths(model, input, output, profile, optimized_model)
        if "device_id" in given and device is Device.cpu:
            raise BiLSTMError(
                "--device-id selects a CUDA device; it does not apply to --device cpu"
            )
        generic = Path(input).suffix.lower() in GENERIC_SUFFIXES
        if generic:
            _refuse_options(given, GENERIC_IGNORES, "tensor input (.npz/.npy/.json)")
            _run_generic(model, Path(input), output, device, device_id, threads, optimization)
            return
        bilstm = BiLSTM.load(
            model,
            device=device,
            device_id=device_id,
            threads=threads,
            optimization=optimization,
            optimized_model_path=optimized_model,
            profile_prefix=str(profile) if profile else None,
        )
        _check_task_options(given, bilstm, anomalies, follow)
        if batch_size is None:
            batch_size = bilstm.batch_size
        pool = None
        if workers > 1:
            if profile is not None:
                raise BiLSTMError(
                    "--profile records one ONNX Runtime session; with --workers each worker "
                    "has its own. Profile with --workers 1"
                )
            from bilstm.runtime.workers import default_threads

            pool = bilstm.worker_source(threads or default_threads(workers), warmup)
        else:
            bilstm.warmup(warmup)
        opts = RunOptions(
            batch_size,
            top_k=top_k,
            probabilities=probabilities,
            tokenize=tokenize.value,
            rolling=rolling,
            anomalies=anomalies,
            threshold=threshold,
            follow=follow,
        )
        reading = Reading(chunk_size, max_line_bytes, shard_of, max_delay_ms)
        failed = _score(bilstm, input, output, fmt, opts, reading, on_error, quiet, pool, workers)
        if profile:
            _report_profile(bilstm.session.end_profiling())
    if failed:
        raise typer.Exit(EXIT_RECORD_ERRORS)


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
        _stderr(f"{count} records, {failed} errors, {elapsed:.2f} s ({rate:,.0f}/s) on {where}")
    return failed


def _given(ctx: typer.Context, name: str) -> bool:
    """True when the option was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _flag(name: str) -> str:
    return {"fmt": "--format", "probabilities": "--no-probabilities"}.get(
        name, "--" + name.replace("_", "-")
    )


def _refuse_options(given: set[str], names: Iterable[str], what: str) -> None:
    wrong = [_flag(n) for n in names if n in given]
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
                f"{_flag(name)} applies to {'/'.join(sorted(owners))} models; this model's task "
                f"is {model.task}. Leave the option out"
            )
    if "anomalies" in given and anomalies and "rolling" not in given and not follow:
        raise BiLSTMError(
            "--anomalies compares each window's forecast with the actual values: it needs "
            "--rolling (one forecast per window) or --follow (online)"
        )
    if "threshold" in given and not anomalies:
        raise BiLSTMError("--threshold sets the anomaly cut-off: it needs --anomalies --rolling")
    online = [_flag(n) for n in ("max_delay_ms", "on_error", "max_line_bytes") if n in given]
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
    _stderr(f"profile written to {path}")


def info(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Show a model's task, labels, vocabulary, inputs/outputs and provenance."""
    _setup_logging(False, debug)
    with user_errors(debug):
        from bilstm.runtime.builtin import resolve_model
        from bilstm.runtime.determinism import determinism
        from bilstm.runtime.generic import describe
        from bilstm.runtime.metadata import METADATA_KEY
        from bilstm.runtime.session import create_session

        path = resolve_model(model)
        session = create_session(path, device=Device.cpu, threads=1)
        if METADATA_KEY not in session.get_modelmeta().custom_metadata_map:
            summary: dict[str, Any] = {
                "path": str(path),
                "size_bytes": path.stat().st_size,
                "task": None,
                "note": "no bilstm metadata: runs in generic mode (tensors in, tensors out)",
                **describe(session),
            }
            _print_summary(summary, as_json)
            return
        bilstm = BiLSTM.load(model, device=Device.cpu, threads=1)
        meta = bilstm.metadata
        summary = {
            "path": str(bilstm.path),
            "size_bytes": bilstm.path.stat().st_size,
            "task": meta.task,
            "labels": meta.labels,
            "vocabulary_size": len(meta.vocabulary),
            "tokenizer": meta.tokenizer.to_dict() if meta.tokenizer else None,
            "task_config": {
                k: (f"{len(v)} entries" if isinstance(v, list) and len(v) > 20 else v)
                for k, v in meta.task_config.items()
            },
            "inputs": {i.name: [i.type, i.shape] for i in bilstm.session.get_inputs()},
            "outputs": {o.name: [o.type, o.shape] for o in bilstm.session.get_outputs()},
            "schema_version": meta.schema_version,
            "toolkit_version": meta.toolkit_version,
            "model": meta.model,
            "training": meta.training,
            "export": meta.export,
            "determinism": determinism(str(meta.export.get("precision", "fp32"))),
        }
        from bilstm.runtime.builtin import builtin_facts

        facts = builtin_facts(bilstm.path)
        if facts is not None:  # a shipped model: its dev metrics, int8 next to fp32
            summary["builtin"] = facts
    _print_summary(summary, as_json)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    for key, value in summary.items():
        text = value if isinstance(value, str | int) else json.dumps(value, ensure_ascii=False)
        typer.echo(f"{key:16} {text}")


def evaluate(
    ctx: typer.Context,
    model: ModelArg,
    data: Annotated[Path, typer.Argument(help="Labelled data in the task's training format.")],
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="[default: 64 on CPU, 1024 on CUDA]")
    ] = None,
    tag_column: Annotated[str, typer.Option(help="tag: upos, xpos or a column number.")] = "upos",
    top_k: Annotated[int, typer.Option(min=1, help="cloze: also report top-k accuracy.")] = 5,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    debug: DebugOpt = False,
) -> None:
    """Print the task metrics of a model (.onnx or checkpoint folder) on DATA, as JSON.

    A checkpoint folder (needs the train extra) is exported to a temporary ONNX file first,
    so both are measured by the same code.
    """
    import tempfile

    _setup_logging(False, debug)
    with user_errors(debug), tempfile.TemporaryDirectory(prefix="bilstm-eval-") as tmp:
        path: str | Path = model
        if Path(model).is_dir():
            path = Path(tmp) / "model.onnx"
            exporter = (ctx.obj or {}).get(EXPORTER_KEY)
            _export_checkpoint_for_eval(exporter, Path(model), path)
        bilstm = BiLSTM.load(path, device=device, threads=threads)
        metrics = bilstm.evaluate(data, batch_size or bilstm.batch_size, tag_column, top_k)
    typer.echo(json.dumps(metrics, indent=2))


CheckpointExporter = Callable[[Path, Path], Any]
EXPORTER_KEY = "checkpoint_exporter"
"""Where `umbrella_app` keeps, in the click context's `obj`, how `bilstm eval CHECKPOINT_DIR`
makes an .onnx: `bilstm.cli` (the full install) passes it; the runtime never imports the
training side itself."""


def _export_checkpoint_for_eval(
    exporter: CheckpointExporter | None, checkpoint: Path, out: Path
) -> None:
    """Export `checkpoint` to `out` with the training side, or say how to install it."""
    import warnings

    if exporter is None:
        missing_training_extra("eval CHECKPOINT")
    assert exporter is not None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exporter(checkpoint, out)
    except ImportError as exc:  # torch or onnx missing behind bilstm.export
        missing_training_extra("eval CHECKPOINT", exc)
    for warning in caught:  # one line each, as `bilstm export` prints them
        _stderr(f"warning: {warning.message}")


def missing_training_extra(name: str, cause: Exception | None = None) -> None:
    """Exit 2 saying that `bilstm NAME` needs the train extra and how to install it."""
    why = f" ({cause})" if cause else ""
    _stderr(
        f"error: `bilstm {name}` needs the training extra{why}; install it with "
        f"pip install torch==2.13.0 'bilstm[train]'"
    )
    raise typer.Exit(EXIT_USAGE)


_APP_SETTINGS: dict[str, Any] = {
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "add_completion": False,
}


def umbrella_app(checkpoint_exporter: CheckpointExporter | None = None) -> typer.Typer:
    """The `bilstm` app with the runtime's commands (run, eval, info, merge).

    `train` and `export` are listed with their help; invoked here, they say how to install
    the training extra (`bilstm.cli` runs the real ones before this app is reached).
    `checkpoint_exporter` lets `eval` take a checkpoint folder.
    """
    umbrella = typer.Typer(
        help="Train, export and run bidirectional LSTM models.",
        context_settings={"obj": {EXPORTER_KEY: checkpoint_exporter}},
        **_APP_SETTINGS,
    )
    umbrella.command("run")(run)
    umbrella.command("eval")(evaluate)
    umbrella.command("info")(info)
    from bilstm.runtime.sharding import merge

    umbrella.command("merge")(merge)
    for name, text in TRAINING_HELP.items():
        umbrella.command(
            name,
            help=text,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )(lambda n=name: missing_training_extra(n))
    return umbrella


def _single_app() -> typer.Typer:
    single = typer.Typer(**_APP_SETTINGS)
    single.command()(run)
    return single


def _make_apps() -> tuple[typer.Typer, typer.Typer]:
    """The `bilstm` umbrella app and the single-command `bilstm-run` app."""
    return umbrella_app(), _single_app()


def invoke(app: typer.Typer, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a Typer app and exit with its code.

    Usage errors are shown as rich's boxed panel only at a terminal; when stderr is a pipe or
    a log they are click's plain lines, which no one hard-wraps at 80 columns.
    """
    # typer >= 0.26 vendors click (its exceptions are not click's own): find the base class of
    # usage errors through the one typer exports.
    click_error: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    )
    try:
        code = app(args=args, prog_name=prog_name, standalone_mode=False)
    except click_error as exc:
        if sys.stderr.isatty():
            from typer import rich_utils

            rich_utils.rich_format_error(exc)  # type: ignore[arg-type]
        else:
            exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE))
    except typer.Abort:
        _stderr("aborted")
        sys.exit(1)
    except BrokenPipeError:
        _quiet_broken_pipe()
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(code if isinstance(code, int) else 0)


def run_main() -> None:
    """Entry point of `bilstm-run` (same as `bilstm run`)."""
    invoke(_single_app())
