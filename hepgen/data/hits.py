"""Calorimeter hit clouds of jets: the HDF5 layout of ``hepgen data hits`` (seed 004).

=========  ===================  ==================================================
key        dtype, shape          content
=========  ===================  ==================================================
hits       float32 (N, H, 3)    (eta_rel, phi_rel, E [GeV]) of the H most energetic
                                cells, sorted by E, zero padded
mask       bool (N, H)          True for real hits
=========  ===================  ==================================================

File attributes record the producer's settings (jet type, seed, cell size, grid,
smearing). Reading checks keys, shapes, finiteness and that padding is zero, naming
the file in the error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hepgen.data.atomic import atomic_output
from hepgen.data.h5 import open_h5
from hepgen.errors import InputFileError, InvalidDataError


@dataclass
class HitSample:
    """Hit clouds ``hits`` (N, H, 3) with ``mask`` (N, H)."""

    hits: np.ndarray
    mask: np.ndarray
    attrs: dict = field(default_factory=dict)
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self):
        self.hits = np.asarray(self.hits, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.hits.ndim != 3 or self.hits.shape[-1] != 3:
            raise InvalidDataError(f"{self.source}: hits must have shape (N, H, 3), got {self.hits.shape}")
        if self.mask.shape != self.hits.shape[:2]:
            raise InvalidDataError(f"{self.source}: mask shape {self.mask.shape} does not match hits {self.hits.shape}")
        if not np.isfinite(self.hits).all():
            raise InvalidDataError(f"{self.source}: hits contain NaN or inf")
        if np.any(self.hits[~self.mask] != 0):
            raise InvalidDataError(f"{self.source}: padded hits (mask False) must be zero")

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def max_hits(self) -> int:
        return self.hits.shape[1]

    @property
    def multiplicity(self) -> np.ndarray:
        return self.mask.sum(1)

    @property
    def total_energy(self) -> np.ndarray:
        """Sum of the hit energies per jet (GeV)."""
        return (self.hits[..., 2] * self.mask).sum(1, dtype=np.float64)


def write_hits(sample: HitSample, path: str | os.PathLike, attrs: dict | None = None) -> Path:
    """Write ``sample`` atomically (the file appears only when complete)."""
    import h5py

    path = Path(path)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("hits", data=sample.hits, compression="gzip", shuffle=True)
            f.create_dataset("mask", data=sample.mask, compression="gzip")
            for k, v in {**sample.attrs, **(attrs or {})}.items():
                f.attrs[k] = v
    return path


def read_hits(path: str | os.PathLike, num: int | None = None) -> HitSample:
    """The hit clouds in ``path`` (the first ``num`` when given)."""
    path = Path(path)
    with open_h5(path) as f:
        missing = [k for k in ("hits", "mask") if k not in f]
        if missing:
            raise InputFileError(f"{path}: not a hit-cloud file (missing {', '.join(missing)})")
        sl = slice(None) if num is None else slice(0, int(num))
        return HitSample(f["hits"][sl], f["mask"][sl], dict(f.attrs), source=str(path))
