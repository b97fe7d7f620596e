"""Write files so that a failure never leaves a broken file nor destroys an old one.

The content goes to a temporary file beside the target, which replaces the target only
when complete (``os.replace`` is atomic on one file system). Used by every writer of
hepgen's data formats.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from hepgen.errors import InputFileError


def temporary_beside(path: Path) -> Path:
    """A new empty temporary file in the folder of ``path`` (which must exist)."""
    if path.parent and not path.parent.exists():
        raise InputFileError(f"{path}: output folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the usual permissions and move it onto ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def discard(tmp: Path) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_output(path) as tmp:`` write ``tmp``; it becomes ``path`` on success."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        discard(tmp)
        raise
