"""LHCO-like dijet events: the HDF5 layout of ``hepgen data dijets`` (seed 001 L2465-2480).

The LHC Olympics R&D set's high-level features of the two leading anti-kT R = 1.0 jets,
ordered by jet mass (J1 the heavier), in GeV:

===========  ====================  ===============================================
key          dtype, shape          content
===========  ====================  ===============================================
features     float32 (N, 5)        ``columns`` attribute: mjj, mj1, delta_mj
                                   (= mj1 - mj2), tau21_j1, tau21_j2
mjj          float32 (N,)          the dijet mass again (what the CWoLa SR cuts on)
jets         float32 (N, 2, 7)     per jet (mass order): pt, eta, phi, m, tau1,
                                   tau2, tau3 (``jet_columns`` attribute)
===========  ====================  ===============================================

and ``label`` int8 (N,): 1 for signal, 0 for background (the producer labels its events by
process; mixed samples keep the labels of their parts). File attributes record the
producer's settings (process, seed, generated events, pT-hat cut, trigger).

:func:`read_dijets` also accepts other files that name ``mjj`` among their features: a
``features`` matrix whose ``columns`` attribute names it, or 1-D datasets of equal
length of which one is ``mjj``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hepgen.data.atomic import atomic_output
from hepgen.data.h5 import open_h5
from hepgen.errors import InputFileError, InvalidDataError, OptionError

COLUMNS = ("mjj", "mj1", "delta_mj", "tau21_j1", "tau21_j2")
JET_COLUMNS = ("pt", "eta", "phi", "m", "tau1", "tau2", "tau3")


@dataclass
class DijetSample:
    """High-level dijet features ``features`` (N, F) named by ``columns``.

    Args:
        features: the feature matrix, one row per event.
        columns: the name of each column; ``mjj`` must be among them.
        jets: optional per-jet kinematics (N, 2, 7), see :data:`JET_COLUMNS`.
        label: optional truth labels (1 signal, 0 background).
        attrs: file attributes (producer settings).
        source: where the sample came from, for error messages.
    """

    features: np.ndarray
    columns: tuple[str, ...] = COLUMNS
    jets: np.ndarray | None = None
    label: np.ndarray | None = None
    attrs: dict = field(default_factory=dict)
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.columns = tuple(str(c) for c in self.columns)
        if self.features.ndim != 2 or self.features.shape[1] != len(self.columns):
            raise InvalidDataError(
                f"{self.source}: features must have shape (N, {len(self.columns)}), got {self.features.shape}"
            )
        if "mjj" not in self.columns:
            raise InvalidDataError(f"{self.source}: no 'mjj' among the feature columns {list(self.columns)}")
        if not np.isfinite(self.features).all():
            raise InvalidDataError(f"{self.source}: features contain NaN or inf")
        if self.jets is not None:
            self.jets = np.asarray(self.jets, dtype=np.float32)
            if self.jets.shape != (len(self.features), 2, len(JET_COLUMNS)):
                raise InvalidDataError(f"{self.source}: jets must have shape (N, 2, {len(JET_COLUMNS)}), got {self.jets.shape}")
        if self.label is not None:
            self.label = np.asarray(self.label).astype(np.int8)
            if self.label.shape != (len(self.features),):
                raise InvalidDataError(f"{self.source}: label must have shape ({len(self.features)},), got {self.label.shape}")

    def __len__(self) -> int:
        return len(self.features)

    def column(self, name: str) -> np.ndarray:
        """One feature column by name."""
        if name not in self.columns:
            raise OptionError(f"{self.source}: no feature {name!r} (has {', '.join(self.columns)})")
        return self.features[:, self.columns.index(name)]

    @property
    def mjj(self) -> np.ndarray:
        return self.column("mjj")

    def select(self, index) -> "DijetSample":
        """The events at ``index`` (a slice, mask or index array)."""
        return DijetSample(
            self.features[index], self.columns, None if self.jets is None else self.jets[index],
            None if self.label is None else self.label[index], dict(self.attrs), self.source,
        )


def concatenate(samples: list[DijetSample]) -> DijetSample:
    """Stack samples with the same columns (labels kept only when every sample has them)."""
    columns = samples[0].columns
    for s in samples[1:]:
        if s.columns != columns:
            raise InvalidDataError(f"{s.source}: columns {list(s.columns)} differ from {list(columns)} of {samples[0].source}")
    jets = np.concatenate([s.jets for s in samples]) if all(s.jets is not None for s in samples) else None
    label = np.concatenate([s.label for s in samples]) if all(s.label is not None for s in samples) else None
    return DijetSample(np.concatenate([s.features for s in samples]), columns, jets, label, dict(samples[0].attrs),
                       "+".join(s.source for s in samples))


def write_dijets(sample: DijetSample, path: str | os.PathLike, attrs: dict | None = None) -> Path:
    """Write ``sample`` atomically (the file appears only when complete).

    Args:
        sample: the events.
        path: the output HDF5 file.
        attrs: extra file attributes (e.g. the seed).
    """
    import h5py

    path = Path(path)
    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            ds = f.create_dataset("features", data=sample.features, compression="gzip", shuffle=True)
            ds.attrs["columns"] = list(sample.columns)
            f.create_dataset("mjj", data=sample.mjj, compression="gzip", shuffle=True)
            if sample.jets is not None:
                js = f.create_dataset("jets", data=sample.jets, compression="gzip", shuffle=True)
                js.attrs["jet_columns"] = list(JET_COLUMNS)
            if sample.label is not None:
                f.create_dataset("label", data=sample.label, compression="gzip")
            for k, v in {**sample.attrs, **(attrs or {})}.items():
                f.attrs[k] = v
    return path


def _decode(values) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(values))


def read_dijets(path: str | os.PathLike, num: int | None = None) -> DijetSample:
    """The dijet events in ``path`` (the first ``num`` when given).

    Args:
        path: an HDF5 file in the layout above (or one with ``mjj`` among 1-D datasets).
        num: read at most this many events.
    """
    import h5py

    path = Path(path)
    sl = slice(None) if num is None else slice(0, int(num))
    with open_h5(path) as f:
        attrs = {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v) for k, v in f.attrs.items()}
        label = f["label"][sl] if "label" in f else None
        if "features" in f and "columns" in f["features"].attrs:
            columns = _decode(f["features"].attrs["columns"])
            if "mjj" not in columns:
                raise InputFileError(f"{path}: the features' columns {list(columns)} do not name 'mjj'")
            jets = f["jets"][sl] if "jets" in f else None
            return DijetSample(f["features"][sl], columns, jets, label, attrs, source=str(path))
        names = [k for k in f if isinstance(f[k], h5py.Dataset) and f[k].ndim == 1 and k != "label"]
        if "mjj" not in names:
            raise InputFileError(f"{path}: not a dijet file (no 'features' matrix with 'columns', no 'mjj' dataset)")
        n = len(f["mjj"])
        names = ["mjj"] + sorted(k for k in names if k != "mjj" and len(f[k]) == n and f[k].dtype.kind == "f")
        features = np.stack([f[k][sl] for k in names], axis=1)
        return DijetSample(features, tuple(names), None, label, attrs, source=str(path))
