"""Find a trained model by run folder or shipped name (``MODEL/DATASET``)."""

from __future__ import annotations

from pathlib import Path

from hepgen.errors import InputFileError
from hepgen.models.assemblies.jets import JetSurrogate
from hepgen.shipped import shipped_models


def _load(folder: Path):
    """Jet, calorimeter or event surrogate, by the model named in the folder's config.yaml."""
    import yaml

    from hepgen.models.assemblies.calo import CALO_MODELS, CaloSurrogate
    from hepgen.models.assemblies.events import EVENT_MODELS, EventSurrogate

    cfg_path = folder / "config.yaml"
    if cfg_path.is_file():
        try:
            model = (yaml.safe_load(cfg_path.read_text()) or {}).get("model")
        except yaml.YAMLError:
            raise InputFileError(f"{cfg_path}: not valid YAML") from None
        if model in CALO_MODELS:
            return CaloSurrogate.load(folder)
        if model in EVENT_MODELS:
            return EventSurrogate.load(folder)
        from hepgen.models.assemblies.grids import GRID_MODELS, GridSurrogate
        from hepgen.models.assemblies.hits import HIT_MODELS, HitSurrogate

        if model in GRID_MODELS:
            return GridSurrogate.load(folder)

        if model in HIT_MODELS:
            return HitSurrogate.load(folder)
    return JetSurrogate.load(folder)


def load_model(name_or_folder: str | Path):
    """A trained model (jet, calorimeter, hit-cloud or event surrogate) by run folder or shipped name."""
    from hepgen.device import keep_freed_memory

    keep_freed_memory()  # sampling allocates the same tensors pass after pass
    path = Path(name_or_folder)
    if path.is_dir():
        return _load(path)
    shipped = shipped_models()
    if str(name_or_folder) in shipped:
        return _load(shipped[str(name_or_folder)])
    names = ", ".join(shipped) or "none shipped"
    raise InputFileError(f"{name_or_folder}: neither a run folder nor a shipped model ({names})")
