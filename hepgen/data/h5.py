"""Opening an HDF5 input for reading, with one clear error that names the file.

:func:`open_h5` is the opener of the dijet (:mod:`hepgen.data.dijets`) and hit-cloud
(:mod:`hepgen.data.hits`) readers. (The JetNet and CaloChallenge readers keep their own
wording of the same errors, which users and tests already see.)
"""

from __future__ import annotations

import os
from pathlib import Path

from hepgen.errors import InputFileError


def open_h5(path: str | os.PathLike):
    """``path`` as a read-only ``h5py.File`` (close it, e.g. ``with open_h5(p) as f``).

    Raises :class:`InputFileError` ``PATH: no such file`` where ``path`` is not a file (missing
    or a folder) and ``PATH: not an HDF5 file`` where HDF5 cannot open it.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise InputFileError(f"{path}: not an HDF5 file") from None


__all__ = ["open_h5"]
