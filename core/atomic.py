"""Atomic file replacement: write a temp file beside the target, rename it into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bilstm.core.errors import InputError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path in `path`'s folder; on success it replaces `path`, else it is removed.

    An interrupted or failed write (KeyboardInterrupt included) leaves no partial file and an
    existing `path` untouched. The file gets the usual permissions (0666 minus the umask).
    """
    directory = Path(path).resolve().parent
    if not directory.is_dir():
        raise InputError(f"{path}: the output folder {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
