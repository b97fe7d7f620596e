"""Write files so that a failure never leaves a broken file nor destroys an old one.

The content goes to a temporary file beside the target, which replaces the target only
when complete (``os.replace`` is atomic on one file system). Used by every writer of
hepgen's data formats; :func:`atomic_folder` does the same for output folders (reports,
anomaly runs): their files are written into a hidden sibling folder and moved in only once
all of them exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """``with atomic_folder(out) as tmp:`` write files into ``tmp``; they enter ``out`` on success.

    Args:
        path: the output folder; its parent must exist. It is created if missing.
        replace: ``True``: ``out`` becomes exactly the new folder (what was in it goes);
            ``False``: the new files are moved into ``out`` beside what it holds, replacing
            files (and folders) of the same name.

    On an exception nothing in ``out`` has changed and the temporary folder is removed.
    """
    out = Path(path)
    if not out.parent.exists():
        raise InputFileError(f"{out}: parent folder {out.parent} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if replace and out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        elif replace:
            os.replace(tmp, out)
        else:
            out.mkdir(exist_ok=True)
            for item in tmp.iterdir():
                target = out / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(item, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
