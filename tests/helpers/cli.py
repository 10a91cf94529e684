"""`bilstm ...` in this process, through the real entry point, for tests where a subprocess is
not the point (argument errors, messages, what a command writes): a subprocess pays ~3 s of
`import torch` for `bilstm train`/`export`; in-process it is paid once per test session.

Keep subprocesses where the process is the point: signals, the installed console scripts,
import boundaries, cold start, the real process's stdout/stderr file descriptors.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass

from typer.testing import CliRunner


@dataclass
class Run:
    """What one in-process command left: its exit status and its two streams."""

    exit_code: int
    stdout: str
    stderr: str


def bilstm(*args: object, input: str | bytes | None = None) -> Run:
    """`bilstm ARGS` run by `bilstm.cli.main` (the `bilstm` console script's function).

    Unlike `CliRunner().invoke(app, ...)` this goes through what the console script does: the
    `train`/`export` lookup and the entry point's own error handling (plain one-line
    usage errors on a non-terminal stderr, the exit status given to `sys.exit`). Exceptions
    other than SystemExit propagate, with their traceback.
    """
    from bilstm.cli import main

    argv = sys.argv
    sys.argv = ["bilstm", *map(str, args)]
    try:
        with CliRunner().isolation(input=input) as (out, err, _):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            # read here: the streams are closed when the isolation ends
            run = Run(code, out.getvalue().decode("utf-8"), err.getvalue().decode("utf-8"))
    finally:
        sys.argv = argv
    return run


def sigint_as_in_a_terminal() -> None:
    """`preexec_fn` for a child that a test interrupts with SIGINT (Ctrl-C). A shell without
    job control starts background jobs with SIGINT ignored, the child inherits that, and
    Python then never raises KeyboardInterrupt: the test would measure the shell, not us."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
