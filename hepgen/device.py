"""Where tensors go: the first CUDA GPU when one is present, else the CPU."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """``cuda`` if available (override with HEPGEN_DEVICE=cpu|cuda[:N]), else ``cpu``."""
    forced = os.environ.get("HEPGEN_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
