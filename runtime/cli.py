"""Command line: `bilstm-run` and the `bilstm` umbrella (run, eval, info; train/export via plugins).

Results go to stdout (or --output), diagnostics and progress to stderr. Exit codes: 0 ok,
1 some records failed, 2 usage/model/data error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer

from bilstm.runtime.errors import BiLSTMError
from bilstm.runtime.model import BiLSTM
from bilstm.runtime.output import Format, RecordWriter, atomic_output
from bilstm.runtime.reader import DEFAULT_MAX_LINE_BYTES, Line, iter_lines
from bilstm.runtime.session import Device, Optimization

log = logging.getLogger("bilstm")

EXIT_RECORD_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
PLUGIN_GROUP = "bilstm.commands"
HOOK_GROUP = "bilstm.hooks"
GENERIC_SUFFIXES = (".npz", ".npy", ".json")
PLUGIN_HELP = {
    "train": "Train a model (needs the train extra: pip install 'bilstm[train]').",
    "export": "Export a checkpoint to ONNX (needs the train extra: pip install 'bilstm[train]').",
}


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
def user_errors(debug: bool) -> Iterator[None]:
    """Turn `BiLSTMError` into a one-line message and exit 2 (the traceback with --debug)."""
    try:
        yield
    except BiLSTMError as exc:
        if debug:
            raise
        _stderr(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    except Terminated:
        _stderr("terminated (SIGTERM): no output file was written (an existing one is unchanged)")
        raise typer.Exit(EXIT_TERMINATED) from None
    except KeyboardInterrupt:
        _stderr("interrupted: no output file was written (an existing one is unchanged)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


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


ModelArg = Annotated[str, typer.Argument(help="Path to a .onnx file, or a built-in model name.")]
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


def _chunks(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    while chunk := list(islice(lines, size)):
        yield chunk


def _forecast_input(model: BiLSTM, source: str) -> tuple[Any, list[int]]:
    """The model's columns from a CSV file (or stdin) as [rows, columns] and file lines."""
    import tempfile

    import numpy as np

    from bilstm.runtime.datasets import read_series
    from bilstm.runtime.reader import STDIN

    if source == STDIN:
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as tmp:
            tmp.write(sys.stdin.buffer.read())
        path = Path(tmp.name)
    else:
        path = Path(source)
    try:
        series = read_series(path, model.columns)
    finally:
        if source == STDIN:
            path.unlink()
    values = np.stack([np.asarray(series.columns[c], np.float32) for c in model.columns], axis=1)
    return values, series.lines


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

    from bilstm.runtime.atomic import atomic_path
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


def run(
    model: ModelArg,
    input: Annotated[
        str, typer.Argument(help="Input file (text lines, or CSV for forecast); - for stdin.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (atomically), not stdout.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.jsonl,
    probabilities: Annotated[
        bool, typer.Option(help="Include probabilities (classify) or confidences (tag).")
    ] = True,
    top_k: Annotated[int, typer.Option(min=1, help="Candidate words per blank (cloze).")] = 5,
    rolling: Annotated[
        bool, typer.Option(help="Forecast: a forecast for every window, not just the last.")
    ] = False,
    anomalies: Annotated[
        bool, typer.Option(help="Forecast: flag actual values far from the forecast (rolling).")
    ] = False,
    threshold: Annotated[
        float, typer.Option(min=0.0, help="Anomaly threshold in residual standard deviations.")
    ] = 3.0,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Inputs per inference batch [default: 64 on CPU, 1024 on CUDA]."),
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
        str, typer.Option(help="record: an error record for a bad line; stop: abort the run.")
    ] = "record",
    max_line_bytes: Annotated[
        int, typer.Option(min=1, help="Longer lines get an error record.")
    ] = DEFAULT_MAX_LINE_BYTES,
    device: DeviceOpt = Device.auto,
    device_id: Annotated[int, typer.Option(min=0, help="CUDA device id.")] = 0,
    threads: ThreadsOpt = None,
    optimization: Annotated[
        Optimization, typer.Option(help="ONNX Runtime graph optimisation level.")
    ] = Optimization.all,
    warmup: Annotated[
        int, typer.Option(min=0, help="Run this many warm-up inferences before scoring.")
    ] = 0,
    profile: Annotated[
        Path | None, typer.Option(help="Write ONNX Runtime's profile (JSON) with this prefix.")
    ] = None,
    optimized_model: Annotated[
        Path | None,
        typer.Option(help="Save the ONNX Runtime-optimised graph here (inspection or reuse)."),
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
    from bilstm.runtime.records import forecast_records, text_records, tsv_columns

    _setup_logging(quiet, debug)
    if on_error not in ("record", "stop"):
        raise typer.BadParameter(
            f"must be 'record' or 'stop', got {on_error!r}", param_hint="--on-error"
        )
    from bilstm.runtime.sharding import parse_shard, select_chunks

    try:
        shard_of = parse_shard(shard) if shard is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from None
    with user_errors(debug), sigterm_raises():
        if shard_of is not None and Path(input).suffix.lower() in GENERIC_SUFFIXES:
            raise BiLSTMError("--shard splits text input by chunks; tensor input has none")
        if Path(input).suffix.lower() in GENERIC_SUFFIXES:
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
        if shard_of is not None and bilstm.task == "forecast":
            raise BiLSTMError("--shard splits text input by chunks; forecast input has none")
        if batch_size is None:
            batch_size = bilstm.batch_size
        bilstm.warmup(warmup)
        show = not quiet and sys.stderr.isatty()
        start = time.perf_counter()
        count = failed = 0
        with atomic_output(output) as handle:
            writer = RecordWriter(handle, fmt, tsv_columns(bilstm, probabilities))
            if bilstm.task == "forecast":
                values, rows = _forecast_input(bilstm, input)
                for record in forecast_records(
                    bilstm, values, rows, rolling, anomalies, threshold, batch_size
                ):
                    writer.write(record)
                    count += 1
            else:
                with _progress(show) as advance:
                    chunks = _chunks(iter_lines(input, max_line_bytes), chunk_size)
                    for chunk in select_chunks(chunks, shard_of):
                        records = text_records(bilstm, chunk, batch_size, top_k, probabilities)
                        bad = [r for r in records if "error" in r]
                        if bad and on_error == "stop":
                            raise BiLSTMError(
                                f"{input}:{bad[0]['line']}: {bad[0]['error']} (--on-error stop)"
                            )
                        for record in records:
                            writer.write(record)
                        writer.flush()
                        count += len(chunk)
                        failed += len(bad)
                        advance(len(chunk))
            writer.flush()
        elapsed = time.perf_counter() - start
        if profile:
            _stderr(f"profile written to {bilstm.session.end_profiling()}")
        if not quiet:
            rate = count / elapsed if elapsed > 0 else 0.0
            _stderr(
                f"{count} records, {failed} errors, {elapsed:.2f} s ({rate:,.0f}/s) "
                f"on {bilstm.providers[0]}"
            )
    if failed:
        raise typer.Exit(EXIT_RECORD_ERRORS)


def info(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Show a model's task, labels, vocabulary, inputs/outputs and provenance."""
    _setup_logging(False, debug)
    with user_errors(debug):
        from bilstm.runtime.builtin import resolve_model
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
        }
    _print_summary(summary, as_json)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    for key, value in summary.items():
        text = value if isinstance(value, str | int) else json.dumps(value, ensure_ascii=False)
        typer.echo(f"{key:16} {text}")


def evaluate(
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

    from bilstm.runtime.evaluation import evaluate as run_eval

    _setup_logging(False, debug)
    with user_errors(debug), tempfile.TemporaryDirectory(prefix="bilstm-eval-") as tmp:
        path: str | Path = model
        if Path(model).is_dir():
            exporter = _plugin("export", group=HOOK_GROUP)
            if exporter is None:
                _missing_plugin("eval CHECKPOINT")
            path = Path(tmp) / "model.onnx"
            exporter(Path(model), path)
        bilstm = BiLSTM.load(path, device=device, threads=threads)
        metrics = run_eval(bilstm, data, batch_size or bilstm.batch_size, tag_column, top_k)
    typer.echo(json.dumps(metrics, indent=2))


def _plugin(name: str, group: str = PLUGIN_GROUP) -> Any:
    """The object an entry point of `group` names (a Typer app or a function), or None."""
    import importlib.metadata  # here, not at the top: its import is ~20 ms of cold start

    for ep in importlib.metadata.entry_points(group=group):
        if ep.name == name:
            return ep.load()
    return None


def _missing_plugin(name: str) -> None:
    _stderr(
        f"error: `bilstm {name}` needs the training extra; install it with "
        f"pip install torch==2.13.0 'bilstm[train]'"
    )
    raise typer.Exit(EXIT_USAGE)


_APP_SETTINGS: dict[str, Any] = {
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "add_completion": False,
}


def _umbrella_app() -> typer.Typer:
    umbrella = typer.Typer(help="Train, export and run bidirectional LSTM models.", **_APP_SETTINGS)
    umbrella.command("run")(run)
    umbrella.command("eval")(evaluate)
    umbrella.command("info")(info)
    from bilstm.runtime.sharding import merge

    umbrella.command("merge")(merge)
    for name, text in PLUGIN_HELP.items():
        umbrella.command(
            name,
            help=text,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )(lambda n=name: _missing_plugin(n))
    return umbrella


def _single_app() -> typer.Typer:
    single = typer.Typer(**_APP_SETTINGS)
    single.command()(run)
    return single


def _make_apps() -> tuple[typer.Typer, typer.Typer]:
    """The `bilstm` umbrella app and the single-command `bilstm-run` app."""
    return _umbrella_app(), _single_app()


def main() -> None:
    """Entry point of `bilstm`."""
    argv = sys.argv[1:]
    if argv and argv[0] in PLUGIN_HELP:
        try:
            plugin = _plugin(argv[0])
        except ImportError as exc:
            _stderr(
                f"error: `bilstm {argv[0]}` cannot start: {exc}; install the training extra "
                f"with pip install torch==2.13.0 'bilstm[train]'"
            )
            sys.exit(EXIT_USAGE)
        if plugin is not None:
            plugin(args=argv[1:], prog_name=f"bilstm {argv[0]}")
            return
    _umbrella_app()()


def run_main() -> None:
    """Entry point of `bilstm-run` (same as `bilstm run`)."""
    _single_app()()
