"""Fitted, invertible preprocessing (fit / transform / inverse_transform, JSON-serialisable)."""

from hepgen.transforms.base import Transform, from_dict, load
from hepgen.transforms.jets import JetPreprocessor
from hepgen.transforms.scalers import BoxCox, Chain, StandardScaler

__all__ = ["BoxCox", "Chain", "JetPreprocessor", "StandardScaler", "Transform", "from_dict", "load"]
