"""Trained models shipped with hepgen: ``<model>/<dataset>/`` folders that sample without training.

Each folder is a run folder reduced to what sampling needs (config.yaml,
preprocessor.json, multiplicity.yaml, weights.pt) plus ``card.yaml`` with how it was
trained and what it scored.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).parent


def shipped_models() -> dict[str, Path]:
    """``{"mdma-gan/t30": folder, ...}`` for every shipped model with weights."""
    found = {}
    for weights in sorted(ROOT.glob("*/*/weights.pt")):
        folder = weights.parent
        found[f"{folder.parent.name}/{folder.name}"] = folder
    return found


def card(folder: Path) -> dict:
    path = folder / "card.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}
