"""Jets as point clouds in the JetNet HDF5 layout.

A file holds two float32 datasets (Kansal et al., arXiv:2106.11535):

* ``particle_features`` (N, P, 4) = (etarel, phirel, ptrel, mask), particles sorted by
  ptrel, zero padded;
* ``jet_features`` (N, 4) = (pt, eta, mass, num_particles).

Files written by :mod:`hepgen.simulate.jets` and the published JetNet files
(``t.hdf5`` with P = 30, ``t150.hdf5`` with P = 150) share it, so both load through
:func:`read_jets`; :func:`load_jetnet` adds the jet-type / feature / split selection of
``jetnet.datasets.JetNet.getData`` for a folder of real files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from hepgen.data.atomic import atomic_output
from hepgen.errors import InputFileError, InvalidDataError, OptionError

PARTICLE_FEATURES = ("etarel", "phirel", "ptrel", "mask")
JET_FEATURES = ("pt", "eta", "mass", "num_particles")
JET_TYPES = ("g", "q", "t", "w", "z")  # the order of jetnet.JetNet.JET_TYPES (class index)
SPLITS = ("train", "valid", "test", "all")


@dataclass
class JetSample:
    """Jets of one sample: ``particle_features`` (N, P, 4) and ``jet_features`` (N, 4)."""

    particle_features: np.ndarray
    jet_features: np.ndarray
    jet_type: str | None = None
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        self.particle_features = np.asarray(self.particle_features, dtype=np.float32)
        self.jet_features = np.asarray(self.jet_features, dtype=np.float32)
        validate_jets(self.particle_features, self.jet_features, name=self.source)

    def __len__(self) -> int:
        return len(self.particle_features)

    @property
    def num_particles(self) -> int:
        """P, the padded number of particles per jet."""
        return self.particle_features.shape[1]

    @property
    def particles(self) -> np.ndarray:
        """(N, P, 3) = (etarel, phirel, ptrel)."""
        return self.particle_features[..., :3]

    @property
    def mask(self) -> np.ndarray:
        """(N, P) boolean mask of real particles."""
        return self.particle_features[..., 3] > 0.5

    @property
    def multiplicity(self) -> np.ndarray:
        """Number of real particles per jet after truncation."""
        return self.mask.sum(axis=1)

    def truncate(self, num_particles: int) -> "JetSample":
        """Keep the ``num_particles`` hardest particles; num_particles is capped as in jetnet."""
        if num_particles > self.num_particles:
            raise OptionError(
                f"--num-particles {num_particles} exceeds the {self.num_particles} particles in {self.source}"
            )
        if num_particles == self.num_particles:
            return self
        return JetSample(
            self.particle_features[:, :num_particles],
            _cap_num_particles(self.jet_features, num_particles),
            self.jet_type,
            self.source,
        )

    def subset(self, index) -> "JetSample":
        return JetSample(self.particle_features[index], self.jet_features[index], self.jet_type, self.source)


def validate_jets(particle_features: np.ndarray, jet_features: np.ndarray | None = None, name: str = "jets") -> None:
    """Raise :class:`InvalidDataError` (one line naming ``name``) unless the arrays are valid."""
    pf = particle_features
    if pf.ndim != 3 or pf.shape[2] != 4:
        raise InvalidDataError(f"{name}: particle_features must have shape (N, P, 4), got {pf.shape}")
    if len(pf) == 0 or pf.shape[1] == 0:
        raise InvalidDataError(f"{name}: empty sample (shape {pf.shape})")
    if not np.isfinite(pf).all():
        bad = int((~np.isfinite(pf)).any(axis=(1, 2)).sum())
        raise InvalidDataError(f"{name}: particle_features contain NaN or inf in {bad} jets")
    mask = pf[..., 3]
    if not np.isin(mask, (0.0, 1.0)).all():
        raise InvalidDataError(f"{name}: the mask (particle feature 4) must be 0 or 1")
    if jet_features is not None:
        jf = jet_features
        if jf.ndim != 2 or jf.shape[1] != 4:
            raise InvalidDataError(f"{name}: jet_features must have shape (N, 4), got {jf.shape}")
        if len(jf) != len(pf):
            raise InvalidDataError(
                f"{name}: {len(jf)} rows of jet_features but {len(pf)} rows of particle_features"
            )
        if not np.isfinite(jf).all():
            raise InvalidDataError(f"{name}: jet_features contain NaN or inf")


def _open_h5(path: Path):
    import h5py

    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, expected an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None


def read_jets(path: str | os.PathLike, num_particles: int | None = None, jet_type: str | None = None) -> JetSample:
    """Read a JetNet-layout file (ours or a published one), optionally truncated to P particles."""
    path = Path(path)
    with _open_h5(path) as f:
        missing = [k for k in ("particle_features", "jet_features") if k not in f]
        if missing:
            raise InputFileError(
                f"{path}: missing dataset(s) {', '.join(missing)}; expected the JetNet layout "
                f"(particle_features, jet_features), found {', '.join(sorted(f.keys())) or 'nothing'}"
            )
        pf = f["particle_features"]
        jf = f["jet_features"]
        if pf.ndim != 3 or pf.shape[-1] != 4:
            raise InputFileError(f"{path}: particle_features must have shape (N, P, 4), got {pf.shape}")
        p = pf.shape[1] if num_particles is None else num_particles
        if p > pf.shape[1]:
            raise OptionError(f"--num-particles {p} exceeds the {pf.shape[1]} particles in {path}")
        pf = np.asarray(pf[:, :p], dtype=np.float32)
        jf = np.asarray(jf, dtype=np.float32)
        stored_type = f.attrs.get("jet_type")
    if jet_type is None and stored_type is not None:
        jet_type = stored_type.decode() if isinstance(stored_type, bytes) else str(stored_type)
    validate_jets(pf, jf, name=str(path))
    if num_particles is not None:
        jf = _cap_num_particles(jf, num_particles)
    return JetSample(pf, jf, jet_type=jet_type, source=str(path))


def _cap_num_particles(jet_features: np.ndarray, num_particles: int) -> np.ndarray:
    """jet_features with num_particles capped at the truncation, as jetnet's loader does."""
    jf = jet_features.copy()
    jf[:, 3] = np.minimum(jf[:, 3], num_particles)
    return jf


def write_jets(sample: JetSample, path: str | os.PathLike, attrs: dict | None = None) -> Path:
    """Write ``sample`` in the JetNet layout.

    The file is written next to ``path`` under a temporary name and moved into place
    only when complete, so a failure never leaves a broken file or destroys an old one.
    The content depends only on the arrays and ``attrs`` (no time stamps).
    """
    import h5py

    path = Path(path)
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        f.create_dataset("particle_features", data=sample.particle_features, track_times=False)
        f.create_dataset("jet_features", data=sample.jet_features, track_times=False)
        if sample.jet_type is not None:
            f.attrs["jet_type"] = sample.jet_type
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def load_jetnet(
    data_dir: str | os.PathLike,
    jet_type: str | Iterable[str] = "all",
    num_particles: int = 30,
    particle_features: Sequence[str] = PARTICLE_FEATURES,
    jet_features: Sequence[str] = ("type",) + JET_FEATURES,
    split: str = "all",
    split_fraction: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 42,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Load published JetNet files from ``data_dir`` as ``jetnet.datasets.JetNet.getData`` does.

    ``{type}.hdf5`` (30 particles) is used for ``num_particles <= 30`` and
    ``{type}150.hdf5`` above, falling back to the 150-particle file truncated when the
    30-particle one is absent. Jet features gain a leading ``type`` index; the
    shuffle (``seed``) and split fractions match jetnet's, so the same split comes out.
    """
    data_dir = Path(data_dir)
    types = list(JET_TYPES) if jet_type == "all" else ([jet_type] if isinstance(jet_type, str) else list(jet_type))
    for t in types:
        if t not in JET_TYPES:
            raise OptionError(f"--jet-type: unknown jet type {t!r}; choose from {', '.join(JET_TYPES)}")
    if not 0 < num_particles <= 150:
        raise OptionError(f"--num-particles must be in 1..150, got {num_particles}")
    for feat in particle_features:
        if feat not in PARTICLE_FEATURES:
            raise OptionError(f"unknown particle feature {feat!r}; choose from {', '.join(PARTICLE_FEATURES)}")
    all_jet = ("type",) + JET_FEATURES
    for feat in jet_features:
        if feat not in all_jet:
            raise OptionError(f"unknown jet feature {feat!r}; choose from {', '.join(all_jet)}")
    if split not in SPLITS:
        raise OptionError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")

    pfs, jfs = [], []
    for t in types:
        candidates = [data_dir / f"{t}150.hdf5"] if num_particles > 30 else [data_dir / f"{t}.hdf5", data_dir / f"{t}150.hdf5"]
        path = next((c for c in candidates if c.exists()), candidates[0])
        sample = read_jets(path, num_particles=num_particles, jet_type=t)
        pfs.append(sample.particle_features[..., [PARTICLE_FEATURES.index(f) for f in particle_features]])
        jf = np.concatenate([np.full((len(sample), 1), JET_TYPES.index(t), np.float32), sample.jet_features], axis=1)
        jfs.append(jf[:, [all_jet.index(f) for f in jet_features]])
    pf = np.concatenate(pfs) if particle_features else None
    jf = np.concatenate(jfs) if jet_features else None
    length = sum(len(p) for p in pfs)
    lcut, rcut = _split_range(length, split, split_fraction)
    perm = np.random.default_rng(seed).permutation(length)
    pick = perm[lcut:rcut]
    return (pf[pick] if pf is not None else None, jf[pick] if jf is not None else None)


def _split_range(length: int, split: str, fractions: Sequence[float]) -> tuple[int, int]:
    """Start and end index of ``split``, as jetnet's ``getSplitting``."""
    if split == "all":
        return 0, length
    if sum(fractions) > 1.0:
        raise OptionError(f"split fractions {list(fractions)} add up to more than 1")
    i = SPLITS.index(split)
    cuts = np.cumsum(np.concatenate([[0], fractions]))
    return int(cuts[i] * length), int(cuts[i + 1] * length)
