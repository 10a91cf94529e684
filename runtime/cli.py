"""Command line of the runtime: `bilstm-run`, and the runtime's commands of the `bilstm`
umbrella (run, eval, info, merge). `bilstm.cli` adds train and export on a full install.

`bilstm-run` starts here (`run_main`). An ordinary command line (MODEL INPUT and options
with their values) is parsed by `run_args` and run by `run_command.execute` without
importing Typer, which is most of what a one-line run would otherwise spend on its command
line (benchmarks/findings/coldstart.md). --help, usage errors and every other command line go
to the Typer command in `commands`, which ends in the same `execute`.

The Typer side (`umbrella_app`, `invoke`, ...) is importable from here as before; it is
loaded on first use.

Results go to stdout (or --output), diagnostics and progress to stderr. Exit codes: 0 ok,
1 some records failed, 2 usage/model/data error, 130 interrupted, 141 closed pipe, 143 SIGTERM.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

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
    quiet_broken_pipe,
    setup_logging,
    sigterm_raises,
    stderr_line,
    user_errors,
)

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

_TYPER_SIDE = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> Any:
    """The Typer commands, imported when first asked for (not by a plain `bilstm-run`)."""
    if name in _TYPER_SIDE:
        from bilstm.runtime import commands

        return getattr(commands, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_main() -> None:
    """Entry point of `bilstm-run` (same as `bilstm run`)."""
    from bilstm.runtime.run_args import parse

    parsed = parse(sys.argv[1:])
    if parsed is None:  # help, usage errors, unusual spellings: Typer's
        from bilstm.runtime.commands import invoke, single_app

        invoke(single_app())
        return
    args, given = parsed
    try:
        setup_logging(args.quiet, args.debug)
        shard_of = None
        if args.shard is not None:
            from bilstm.runtime.sharding import parse_shard

            shard_of = parse_shard(args.shard)  # `parse` checked it
        code = execute(args, given, shard_of)
    except KeyboardInterrupt:  # outside `execute`'s own handling: as the Typer path says it
        stderr_line("\naborted")
        code = 1
    except BrokenPipeError:
        quiet_broken_pipe()
        code = EXIT_BROKEN_PIPE
    sys.exit(code)


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
