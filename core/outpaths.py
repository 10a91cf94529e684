"""Where a command may write: the checks that keep a tool from destroying what it did not create.

Every command that writes a file or folder checks its target here *before* doing any work, so
a refused run costs nothing and touches nothing:

- an output that is one of the command's inputs (the same file, also through a symlink or a
  hard link) is refused: writing it would destroy the input while it is being read;
- an output file where a folder is (or a folder where a file is) is refused;
- an existing output is replaced only when the command allows it (`bilstm-run -o`, whose
  output is a result file) or when the user says `--force` (checkpoints, models, merges).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from bilstm.core.errors import InputError


def same_file(a: Path, b: Path) -> bool:
    """True when `a` and `b` name the same existing file (symlinks and hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_not_an_input(output: Path, inputs: Iterable[Path | str], flag: str = "--output") -> None:
    """Refuse an output that is one of the inputs (same file through any link)."""
    for source in inputs:
        source = Path(source)
        if same_file(output, source) or (
            not output.exists() and output.resolve() == source.resolve()
        ):
            raise InputError(
                f"{output}: {flag} is the input file {source}; writing it would destroy the "
                "input. Write the output elsewhere"
            )


def check_output_file(
    output: Path,
    inputs: Iterable[Path | str] = (),
    *,
    force: bool | None = None,
    flag: str = "--output",
) -> None:
    """Check a file output before any work: not an input, not a folder, its folder exists.

    `force=None`: an existing file may be replaced (a result file, as `sort -o`).
    `force=False`: an existing file is refused ("use --force"); `True`: it may be replaced.
    """
    output = Path(output)
    check_not_an_input(output, inputs, flag)
    if output.is_dir():
        raise InputError(
            f"{output}: {flag} is a folder; give a file name (e.g. {output / 'out.jsonl'})"
        )
    parent = output.resolve().parent
    if not parent.is_dir():
        raise InputError(f"{output}: the output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise InputError(f"{output}: the output folder {parent} is not writable")
    if force is False and (output.exists() or output.is_symlink()):
        raise InputError(
            f"{output}: already exists; pass --force to replace it, or write elsewhere"
        )
