"""Command line of the runtime: `bilstm-run`, and the runtime's commands of the `bilstm`
umbrella (run, eval, info, merge). `bilstm.cli` adds train and export on a full install.

`bilstm-run` starts here (`console_main`, or `run_main`). An ordinary command line (MODEL
INPUT and options with their values) is parsed by `run_args` and run by
`run_command.execute` without importing Typer; --help, usage errors and every other command
line go to the Typer command in `commands`, which ends in the same `execute`. What a
one-line run spends, and on what: benchmarks/findings/coldstart.md.

This module imports nothing of its own: the names below (the Typer apps, `user_errors`,
...) load on first use, so that the script can set up the process before numpy is imported.

Results go to stdout (or --output), diagnostics and progress to stderr. Exit codes: 0 ok,
1 some records failed, 2 usage/model/data error, 130 interrupted, 141 closed pipe, 143 SIGTERM.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bilstm.runtime.commands import (
        EXPORTER_KEY,
        CheckpointExporter,
        _given,
        _make_apps,
        evaluate,
        info,
        invoke,
        missing_training_extra,
        run,
        single_app,
        umbrella_app,
    )
    from bilstm.runtime.run_command import (
        EXIT_BROKEN_PIPE,
        EXIT_INTERRUPTED,
        EXIT_RECORD_ERRORS,
        EXIT_TERMINATED,
        EXIT_USAGE,
        OnError,
        RunArgs,
        Terminated,
        Tokenize,
        _score,
        execute,
        sigterm_raises,
        user_errors,
    )

# Where each name importable from here lives. Nothing is imported with this module: the
# `bilstm-run` script imports it first, and `run_main` must set the BLAS threads before
# numpy is imported; Typer is loaded only for what needs it.
_NAMES = {
    **dict.fromkeys(
        (
            "EXPORTER_KEY",
            "CheckpointExporter",
            "_given",
            "_make_apps",
            "evaluate",
            "info",
            "invoke",
            "missing_training_extra",
            "run",
            "single_app",
            "umbrella_app",
        ),
        "bilstm.runtime.commands",
    ),
    **dict.fromkeys(
        (
            "EXIT_BROKEN_PIPE",
            "EXIT_INTERRUPTED",
            "EXIT_RECORD_ERRORS",
            "EXIT_TERMINATED",
            "EXIT_USAGE",
            "OnError",
            "RunArgs",
            "Terminated",
            "Tokenize",
            "_score",
            "execute",
            "sigterm_raises",
            "user_errors",
        ),
        "bilstm.runtime.run_command",
    ),
}


def __getattr__(name: str) -> Any:
    """The commands and their parts, imported when first asked for."""
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_main() -> None:
    """Entry point of `bilstm-run` (same as `bilstm run`); exits with the run's status."""
    sys.exit(_run(sys.argv[1:]))


def console_main() -> None:
    """The `bilstm-run` console script: `run_main`, then leave without the interpreter's
    teardown (30-35 ms of a one-line run on the project's machine, spent freeing numpy's and
    ONNX Runtime's modules).

    Only a finished, single-process run leaves that way, after stdout and stderr are
    flushed: the output file is already renamed into place and nothing is left to clean up.
    A run with --workers, or one that raised, exits normally.
    """
    code = _run(sys.argv[1:], fast_exit=True)
    sys.exit(code)


def _run(argv: list[str], fast_exit: bool = False) -> int:
    # The runtime never multiplies matrices in numpy (ONNX Runtime does, with its own
    # threads). OpenBLAS would still start its worker threads when numpy loads it: a quarter
    # of the CPU time of importing numpy and onnxruntime on a 2-core machine. One thread,
    # unless the user chose (benchmarks/findings/coldstart.md).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from bilstm.runtime.run_args import parse

    parsed = parse(argv)
    if parsed is None:  # help, usage errors, unusual spellings: Typer's
        from bilstm.runtime.commands import invoke, single_app

        invoke(single_app(), argv)  # exits
        return 0
    from bilstm.runtime.run_command import (
        EXIT_BROKEN_PIPE,
        execute,
        quiet_broken_pipe,
        setup_logging,
        stderr_line,
    )

    args, given = parsed
    try:
        setup_logging(args.quiet, args.debug)
        shard_of = None
        if args.shard is not None:
            from bilstm.runtime.sharding import parse_shard

            shard_of = parse_shard(args.shard)  # `parse` checked it
        code = execute(args, given, shard_of)
        if fast_exit and args.workers == 1:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:  # None when the process was started with it closed
                    stream.flush()
            os._exit(code)
    except KeyboardInterrupt:  # outside `execute`'s own handling: as the Typer path says it
        stderr_line("\naborted")
        code = 1
    except BrokenPipeError:
        quiet_broken_pipe()
        code = EXIT_BROKEN_PIPE
    return code


__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERRUPTED",
    "EXIT_RECORD_ERRORS",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "EXPORTER_KEY",
    "CheckpointExporter",
    "OnError",
    "RunArgs",
    "Terminated",
    "Tokenize",
    "_given",
    "_make_apps",
    "_score",
    "console_main",
    "evaluate",
    "execute",
    "info",
    "invoke",
    "missing_training_extra",
    "run",
    "run_main",
    "sigterm_raises",
    "single_app",
    "umbrella_app",
    "user_errors",
]
