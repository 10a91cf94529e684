"""Command line: `bilstm-run` and the `bilstm` umbrella (run, eval, info; train/export via plugins).

Results go to stdout (or --output), diagnostics and progress to stderr. Exit codes: 0 ok,
1 some records failed, 2 usage/model/data error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
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
from bilstm.runtime.model import DEFAULT_BATCH_SIZE, BiLSTM
from bilstm.runtime.output import Format, RecordWriter, atomic_output
from bilstm.runtime.reader import DEFAULT_MAX_LINE_BYTES, Line, iter_lines
from bilstm.runtime.session import Device, Optimization

log = logging.getLogger("bilstm")

EXIT_RECORD_ERRORS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PLUGIN_GROUP = "bilstm.commands"
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
    except KeyboardInterrupt:
        _stderr("interrupted: no output file was written (an existing one is unchanged)")
        raise typer.Exit(EXIT_INTERRUPTED) from None


ModelArg = Annotated[str, typer.Argument(help="Path to a .onnx file, or a built-in model name.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary.")]
DeviceOpt = Annotated[Device, typer.Option(help="Execution device; auto prefers CUDA.")]
ThreadsOpt = Annotated[
    int | None, typer.Option(min=1, help="Intra-op threads (default: one per core).")
]


def _chunks(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    while chunk := list(islice(lines, size)):
        yield chunk


def _record(model: BiLSTM, line: Line, probs: Any) -> dict[str, Any]:
    if line.error is not None:
        return {"line": line.number, "error": line.error}
    if probs is None:
        return {"line": line.number, "label": None, "probabilities": None}
    return {
        "line": line.number,
        "label": model.labels[int(probs.argmax())],
        "probabilities": {
            lab: round(float(p), 6) for lab, p in zip(model.labels, probs, strict=True)
        },
    }


def run(
    model: ModelArg,
    input: Annotated[str, typer.Argument(help="Text file, one input per line; - for stdin.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (atomically), not stdout.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.jsonl,
    probabilities: Annotated[bool, typer.Option(help="Include every label's probability.")] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per inference batch.")] = (
        DEFAULT_BATCH_SIZE
    ),
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Lines read, sorted by length and scored at a time.")
    ] = 4096,
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
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score every line of INPUT with MODEL; one output record per input line, in order.

    A line without tokens (empty or whitespace) gets label null. A line that cannot be read
    (invalid UTF-8, too long) gets an error record, or stops the run with --on-error stop.
    """
    _setup_logging(quiet, debug)
    if on_error not in ("record", "stop"):
        raise typer.BadParameter(
            f"must be 'record' or 'stop', got {on_error!r}", param_hint="--on-error"
        )
    with user_errors(debug):
        bilstm = BiLSTM.load(
            model, device=device, device_id=device_id, threads=threads, optimization=optimization
        )
        start = time.perf_counter()
        count = failed = 0
        with atomic_output(output) as handle:
            writer = RecordWriter(handle, fmt, bilstm.labels, probabilities)
            for chunk in _chunks(iter_lines(input, max_line_bytes), chunk_size):
                bad = [ln for ln in chunk if ln.error is not None]
                if bad and on_error == "stop":
                    raise BiLSTMError(f"{input}:{bad[0].number}: {bad[0].error} (--on-error stop)")
                encoded = bilstm.encode([ln.text or "" for ln in chunk])
                probs = bilstm.probabilities(encoded, batch_size)
                for line, p in zip(chunk, probs, strict=True):
                    writer.write(_record(bilstm, line, p))
                count += len(chunk)
                failed += len(bad)
        elapsed = time.perf_counter() - start
        if not quiet:
            rate = count / elapsed if elapsed > 0 else 0.0
            _stderr(
                f"{count} lines, {failed} errors, {elapsed:.2f} s ({rate:,.0f} lines/s) "
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
        bilstm = BiLSTM.load(model, device=Device.cpu, threads=1)
        meta = bilstm.metadata
        summary = {
            "path": str(bilstm.path),
            "size_bytes": bilstm.path.stat().st_size,
            "task": meta.task,
            "labels": meta.labels,
            "vocabulary_size": len(meta.vocabulary),
            "tokenizer": meta.tokenizer.to_dict(),
            "inputs": {i.name: [i.type, i.shape] for i in bilstm.session.get_inputs()},
            "outputs": {o.name: [o.type, o.shape] for o in bilstm.session.get_outputs()},
            "schema_version": meta.schema_version,
            "toolkit_version": meta.toolkit_version,
            "model": meta.model,
            "training": meta.training,
            "export": meta.export,
        }
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    for key, value in summary.items():
        text = value if isinstance(value, str | int) else json.dumps(value, ensure_ascii=False)
        typer.echo(f"{key:16} {text}")


def evaluate(
    model: ModelArg,
    data: Annotated[Path, typer.Argument(help="Labelled data: label<TAB>text TSV or JSONL.")],
    batch_size: Annotated[int, typer.Option(min=1)] = DEFAULT_BATCH_SIZE,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    debug: DebugOpt = False,
) -> None:
    """Print the task metrics of an exported model on labelled data, as JSON."""
    from bilstm.runtime.datasets import read_classification
    from bilstm.runtime.errors import DataError
    from bilstm.runtime.metrics import classification_metrics

    _setup_logging(False, debug)
    with user_errors(debug):
        bilstm = BiLSTM.load(model, device=device, threads=threads)
        items = read_classification(data)
        unknown = sorted({it.label for it in items} - set(bilstm.labels))
        if unknown:
            raise DataError(f"{data}: labels {unknown} are not among the model's {bilstm.labels}")
        index = {lab: i for i, lab in enumerate(bilstm.labels)}
        probs = bilstm.probabilities(bilstm.encode([it.text for it in items]), batch_size)
        # A text without tokens has no prediction: it counts as wrong (class -1 never matches).
        pred = [int(p.argmax()) if p is not None else -1 for p in probs]
        gold = [index[it.label] for it in items]
        kept = [(g, p) for g, p in zip(gold, pred, strict=True) if p >= 0]
        metrics = classification_metrics([g for g, _ in kept], [p for _, p in kept], bilstm.labels)
        metrics["accuracy"] = sum(g == p for g, p in kept) / len(items)
        metrics["count"] = len(items)
        metrics["no_tokens"] = len(items) - len(kept)
    typer.echo(json.dumps(metrics, indent=2))


def _plugin(name: str) -> typer.Typer | None:
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        if ep.name == name:
            app = ep.load()
            assert isinstance(app, typer.Typer)
            return app
    return None


def _missing_plugin(name: str) -> None:
    _stderr(
        f"error: `bilstm {name}` needs the training extra; install it with "
        f"pip install torch==2.13.0 'bilstm[train]'"
    )
    raise typer.Exit(EXIT_USAGE)


def _make_apps() -> tuple[typer.Typer, typer.Typer]:
    settings: dict[str, Any] = {
        "no_args_is_help": True,
        "pretty_exceptions_enable": False,
        "add_completion": False,
    }
    umbrella = typer.Typer(help="Train, export and run bidirectional LSTM models.", **settings)
    umbrella.command("run")(run)
    umbrella.command("eval")(evaluate)
    umbrella.command("info")(info)
    for name, text in PLUGIN_HELP.items():
        umbrella.command(
            name,
            help=text,
            add_help_option=False,
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )(lambda n=name: _missing_plugin(n))
    single = typer.Typer(**settings)
    single.command()(run)
    return umbrella, single


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
    umbrella, _ = _make_apps()
    umbrella()


def run_main() -> None:
    """Entry point of `bilstm-run` (same as `bilstm run`)."""
    _, single = _make_apps()
    single()
