"""The Typer commands of the runtime: `bilstm-run` (help, usage errors), and the runtime's
commands of the `bilstm` umbrella (run, eval, info, merge). `bilstm.cli` adds train and export
on a full install.

`bilstm-run` with an ordinary command line does not come here: `bilstm.runtime.cli.run_main`
parses it with `bilstm.runtime.run_args` and calls `run_command.execute` without importing
Typer (a tenth of a cold start). Everything else (--help, a usage error, an option spelled
in a way that parser leaves to Typer) is parsed here, and ends in the same `execute`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from bilstm.runtime.model import BiLSTM
from bilstm.runtime.output import Format
from bilstm.runtime.run_command import (
    EXIT_BROKEN_PIPE,
    EXIT_USAGE,
    OnError,
    RunArgs,
    Tokenize,
    execute,
    quiet_broken_pipe,
    setup_logging,
    stderr_line,
    user_errors,
)
from bilstm.runtime.session import Device, Optimization

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
_D = RunArgs._field_defaults  # the command's defaults are those of `RunArgs`


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
    ] = _D["output"],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = _D["fmt"],
    probabilities: Annotated[
        bool, typer.Option(help="Include probabilities (classify) or confidences (tag).")
    ] = _D["probabilities"],
    top_k: Annotated[int, typer.Option(min=1, help="Candidate words per blank (cloze).")] = _D[
        "top_k"
    ],
    tokenize: Annotated[
        Tokenize,
        typer.Option(
            help="tag: spaces = the line is tokens separated by whitespace (as CoNLL-U "
            "training data); words = raw text, split into words and punctuation."
        ),
    ] = _D["tokenize"],
    rolling: Annotated[
        bool, typer.Option(help="Forecast: a forecast for every window, not just the last.")
    ] = _D["rolling"],
    anomalies: Annotated[
        bool,
        typer.Option(help="Forecast: flag actual values far from the forecast (needs --rolling)."),
    ] = _D["anomalies"],
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, help="Anomaly threshold in residual standard deviations (--anomalies)."
        ),
    ] = _D["threshold"],
    follow: Annotated[
        bool,
        typer.Option(
            help="Forecast online: a forecast as each row arrives, and with --anomalies each "
            "row checked against the forecasts made for it (for `tail -f FILE | ...`)."
        ),
    ] = _D["follow"],
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Inputs per inference batch \\[default: 64 on CPU, 1024 on CUDA]."
        ),
    ] = _D["batch_size"],
    chunk_size: Annotated[
        int, typer.Option(min=1, help="Lines read, sorted by length and scored at a time.")
    ] = _D["chunk_size"],
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Score only chunks I, I+N, I+2N... (0-based; merge with `bilstm merge`).",
        ),
    ] = _D["shard"],
    on_error: Annotated[
        OnError,
        typer.Option(help="record: an error record for a bad line; stop: abort the run."),
    ] = _D["on_error"],
    max_line_bytes: Annotated[
        int, typer.Option(min=1, help="Longer lines get an error record.")
    ] = _D["max_line_bytes"],
    max_delay_ms: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Live input (pipe, terminal): score what has arrived once a line has waited "
            "this long for its chunk to fill (0: as soon as no more input is ready). Files "
            "are read in full chunks.",
        ),
    ] = _D["max_delay_ms"],
    device: DeviceOpt = _D["device"],
    device_id: Annotated[
        int, typer.Option(min=0, help="CUDA device id (with --device cuda or auto).")
    ] = _D["device_id"],
    threads: ThreadsOpt = _D["threads"],
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes scoring chunks side by side, each with its own ONNX "
            "Runtime session of --threads intra-op threads (default with workers: the cores "
            "shared out); input order is kept. Text models.",
        ),
    ] = _D["workers"],
    optimization: Annotated[
        Optimization, typer.Option(help="ONNX Runtime graph optimisation level.")
    ] = _D["optimization"],
    warmup: Annotated[
        int, typer.Option(min=0, help="Run this many warm-up inferences before scoring.")
    ] = _D["warmup"],
    profile: Annotated[
        Path | None,
        typer.Option(
            metavar="PREFIX",
            help="Write ONNX Runtime's profile (JSON) to PREFIX_<date>.json.",
        ),
    ] = _D["profile"],
    optimized_model: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Save the ONNX Runtime-optimised graph here (inspection or reuse).",
        ),
    ] = _D["optimized_model"],
    quiet: QuietOpt = _D["quiet"],
    debug: DebugOpt = _D["debug"],
) -> None:
    """Run MODEL on INPUT; one output record per input line (or window), in order.

    classify/tag/cloze: one text per line (tag: whitespace-separated tokens; cloze: a line
    with one ___ blank). A line without tokens gets label null (classify) or empty lists.
    A line that cannot be read (invalid UTF-8, too long) gets an error record, or stops the
    run with --on-error stop. forecast: a CSV with the model's columns.
    """
    setup_logging(quiet, debug)
    shard_of = None
    if shard is not None:
        from bilstm.runtime.sharding import parse_shard

        try:
            shard_of = parse_shard(shard)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--shard") from None
    args = RunArgs(
        model=model,
        input=input,
        output=output,
        fmt=fmt,
        probabilities=probabilities,
        top_k=top_k,
        tokenize=tokenize,
        rolling=rolling,
        anomalies=anomalies,
        threshold=threshold,
        follow=follow,
        batch_size=batch_size,
        chunk_size=chunk_size,
        shard=shard,
        on_error=on_error,
        max_line_bytes=max_line_bytes,
        max_delay_ms=max_delay_ms,
        device=device,
        device_id=device_id,
        threads=threads,
        workers=workers,
        optimization=optimization,
        warmup=warmup,
        profile=profile,
        optimized_model=optimized_model,
        quiet=quiet,
        debug=debug,
    )
    given = {name for name in ctx.params if _given(ctx, name)}
    code = execute(args, given, shard_of)
    if code:
        raise typer.Exit(code)


def _given(ctx: typer.Context, name: str) -> bool:
    """True when the option was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def info(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """Show a model's task, labels, vocabulary, inputs/outputs and provenance."""
    setup_logging(False, debug)
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

    setup_logging(False, debug)
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
        stderr_line(f"warning: {warning.message}")


def missing_training_extra(name: str, cause: Exception | None = None) -> None:
    """Exit 2 saying that `bilstm NAME` needs the train extra and how to install it."""
    why = f" ({cause})" if cause else ""
    stderr_line(
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


def single_app() -> typer.Typer:
    """The `bilstm-run` app: the `run` command alone."""
    single = typer.Typer(**_APP_SETTINGS)
    single.command()(run)
    return single


def _make_apps() -> tuple[typer.Typer, typer.Typer]:
    """The `bilstm` umbrella app and the single-command `bilstm-run` app."""
    return umbrella_app(), single_app()


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
        stderr_line("aborted")
        sys.exit(1)
    except BrokenPipeError:
        quiet_broken_pipe()
        sys.exit(EXIT_BROKEN_PIPE)
    sys.exit(code if isinstance(code, int) else 0)
