"""Find a trained model by run folder or shipped name (``MODEL/DATASET``)."""

from __future__ import annotations

from pathlib import Path

from hepgen.errors import InputFileError
from hepgen.models.assemblies.jets import JetSurrogate
from hepgen.shipped import shipped_models


def load_model(name_or_folder: str | Path) -> JetSurrogate:
    path = Path(name_or_folder)
    if path.is_dir():
        return JetSurrogate.load(path)
    shipped = shipped_models()
    if str(name_or_folder) in shipped:
        return JetSurrogate.load(shipped[str(name_or_folder)])
    names = ", ".join(shipped) or "none shipped"
    raise InputFileError(f"{name_or_folder}: neither a run folder nor a shipped model ({names})")
