"""Calorimeter showers in the CaloChallenge HDF5 layout.

A file holds ``incident_energies`` (N, 1) and ``showers`` (N, voxels), both in MeV, the
voxels in the order of :mod:`hepgen.data.geometry`. Files are written in float64 by default,
the type of the published CaloChallenge files (whose ``evaluate.py`` assumes it); readers
accept float32 and float64 files alike and hold showers as float32 in memory
(:class:`ShowerSample`). The DS3 file of the challenge has 100k showers x 40500 voxels
(16 GB as float32), so reading can stream: :func:`iter_showers` yields chunks and
:class:`ShowerWriter` appends chunks, neither holding more than one chunk in memory.
:func:`read_showers` loads a whole (small) file.

Every read checks the layout: both datasets present, matching lengths, the voxel count of
the geometry, finite and non-negative values, at least one shower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from hepgen.data.atomic import discard, publish, temporary_beside
from hepgen.data.geometry import CaloGeometry, geometry_for_voxels, load_geometry
from hepgen.errors import InputFileError, InvalidDataError

DEFAULT_CHUNK = 10_000
#: Type of the datasets written (the published CaloChallenge files are float64).
DEFAULT_DTYPE = np.float64


@dataclass
class ShowerSample:
    """Showers with their incident energies (MeV) on a geometry."""

    incident_energies: np.ndarray
    showers: np.ndarray
    geometry: CaloGeometry | None = None
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        self.incident_energies = np.asarray(self.incident_energies, dtype=np.float32).reshape(-1, 1)
        self.showers = np.asarray(self.showers, dtype=np.float32)
        if self.geometry is None and self.showers.ndim == 2:
            self.geometry = geometry_for_voxels(self.showers.shape[1])
        validate_showers(self.incident_energies, self.showers, self.geometry, name=self.source)

    def __len__(self) -> int:
        return len(self.showers)

    def __getitem__(self, index) -> "ShowerSample":
        return ShowerSample(self.incident_energies[index], self.showers[index], self.geometry, self.source)


def validate_showers(energies: np.ndarray, showers: np.ndarray, geometry: CaloGeometry | None,
                     name: str = "<memory>", allow_empty: bool = False) -> None:
    """Raise :class:`InvalidDataError` with one line naming the problem."""
    if showers.ndim != 2:
        raise InvalidDataError(f"{name}: 'showers' must have shape (N, voxels), got {showers.shape}")
    if energies.ndim != 2 or energies.shape[1] != 1:
        raise InvalidDataError(f"{name}: 'incident_energies' must have shape (N, 1), got {energies.shape}")
    if len(energies) != len(showers):
        raise InvalidDataError(f"{name}: {len(energies)} incident energies but {len(showers)} showers")
    if not allow_empty and len(showers) == 0:
        raise InvalidDataError(f"{name}: the sample is empty")
    if geometry is not None and showers.shape[1] != geometry.num_voxels:
        raise InvalidDataError(f"{name}: showers have {showers.shape[1]} voxels but geometry "
                               f"{geometry.name} has {geometry.num_voxels}")
    for key, arr in (("incident_energies", energies), ("showers", showers)):
        if arr.size and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).any(axis=1).sum())
            raise InvalidDataError(f"{name}: '{key}' has NaN or inf values in {bad} showers")
    if showers.size and (showers < 0).any():
        raise InvalidDataError(f"{name}: 'showers' has negative voxel energies in "
                               f"{int((showers < 0).any(axis=1).sum())} showers")
    if energies.size and (energies <= 0).any():
        raise InvalidDataError(f"{name}: 'incident_energies' must be positive")


def _open(path: str | os.PathLike):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc.__class__.__name__})") from None
    for key in ("incident_energies", "showers"):
        if key not in f:
            f.close()
            raise InputFileError(f"{path}: missing dataset '{key}' (CaloChallenge layout needs "
                                 "'incident_energies' and 'showers')")
    return f


def shower_file_info(path: str | os.PathLike, geometry: str | CaloGeometry | None = None) -> tuple[int, CaloGeometry]:
    """Number of showers and the geometry of a file, checked without reading the voxels."""
    with _open(path) as f:
        n, voxels = f["showers"].shape if f["showers"].ndim == 2 else (None, None)
        if n is None:
            raise InvalidDataError(f"{path}: 'showers' must have shape (N, voxels), got {f['showers'].shape}")
        if f["incident_energies"].shape[0] != n:
            raise InvalidDataError(f"{path}: {f['incident_energies'].shape[0]} incident energies but {n} showers")
        geo_name = f.attrs.get("geometry")
    geo = _resolve_geometry(geometry, geo_name, voxels, path)
    if n == 0:
        raise InvalidDataError(f"{path}: the sample is empty")
    return n, geo


def shower_file_attrs(path: str | os.PathLike) -> dict:
    """The file's attributes (seed, generator, ``producer_version``, geometry, ...)."""
    with _open(path) as f:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}


def _resolve_geometry(geometry, stored_name, voxels, path) -> CaloGeometry:
    if isinstance(geometry, CaloGeometry):
        geo = geometry
    elif geometry:
        geo = load_geometry(geometry)
    elif stored_name:
        geo = load_geometry(str(stored_name))
    else:
        try:
            geo = geometry_for_voxels(voxels)
        except InputFileError:
            raise InputFileError(f"{path}: {voxels} voxels match no known geometry; pass the geometry") from None
    if voxels != geo.num_voxels:
        raise InvalidDataError(f"{path}: showers have {voxels} voxels but geometry {geo.name} has {geo.num_voxels}")
    return geo


def iter_showers(path: str | os.PathLike, geometry: str | CaloGeometry | None = None,
                 chunk_size: int = DEFAULT_CHUNK, start: int = 0, stop: int | None = None) -> Iterator[ShowerSample]:
    """Yield the showers of a file in chunks of ``chunk_size`` (checked one by one)."""
    n, geo = shower_file_info(path, geometry)
    stop = n if stop is None else min(stop, n)
    with _open(path) as f:
        for lo in range(start, stop, chunk_size):
            hi = min(lo + chunk_size, stop)
            yield ShowerSample(f["incident_energies"][lo:hi], f["showers"][lo:hi], geo, f"{path}[{lo}:{hi}]")


def read_showers(path: str | os.PathLike, geometry: str | CaloGeometry | None = None,
                 num_showers: int | None = None) -> ShowerSample:
    """Read a whole file (or its first ``num_showers``)."""
    n, geo = shower_file_info(path, geometry)
    stop = n if num_showers is None else min(num_showers, n)
    with _open(path) as f:
        return ShowerSample(f["incident_energies"][:stop], f["showers"][:stop], geo, str(path))


class ShowerWriter:
    """Append chunks of showers to a new CaloChallenge file.

    Written under a temporary name in the target folder and moved into place by
    :meth:`close` only when complete, so a failure never leaves a half file nor touches an
    existing one. Use as a context manager; content depends only on the data (no time
    stamps), so the same showers give the same bytes. ``dtype``: float64 by default (the
    published files' type, which the challenge's ``evaluate.py`` expects), float32 halves
    the size; the showers of a :class:`ShowerSample` are float32, so float64 stores them
    exactly.
    """

    def __init__(self, path: str | os.PathLike, geometry: CaloGeometry, attrs: dict | None = None,
                 dtype=DEFAULT_DTYPE, compression: str | None = "gzip"):
        import h5py

        self.path = Path(path)
        self.geometry = geometry
        self.tmp = temporary_beside(self.path)
        self.file = h5py.File(self.tmp, "w")
        nv = geometry.num_voxels
        chunks = (max(1, min(1000, 4_000_000 // nv)), nv)
        kw = dict(compression=compression, compression_opts=4, shuffle=True) if compression else {}
        self.file.create_dataset("incident_energies", shape=(0, 1), maxshape=(None, 1), dtype=dtype,
                                 chunks=(chunks[0], 1), track_times=False, **kw)
        self.file.create_dataset("showers", shape=(0, nv), maxshape=(None, nv), dtype=dtype,
                                 chunks=chunks, track_times=False, **kw)
        self.file.attrs["geometry"] = geometry.name
        for key, value in (attrs or {}).items():
            self.file.attrs[key] = value
        self.count = 0

    def write(self, sample: ShowerSample) -> None:
        validate_showers(sample.incident_energies, sample.showers, self.geometry, name=str(self.path), allow_empty=True)
        n = len(sample)
        for key, arr in (("incident_energies", sample.incident_energies), ("showers", sample.showers)):
            ds = self.file[key]
            ds.resize(self.count + n, axis=0)
            ds[self.count:self.count + n] = arr
        self.count += n

    def close(self) -> Path:
        self.file.close()
        publish(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.file.close()
        finally:
            discard(self.tmp)

    def __enter__(self) -> "ShowerWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_showers(sample: ShowerSample, path: str | os.PathLike, attrs: dict | None = None,
                  dtype=DEFAULT_DTYPE) -> Path:
    """Write a whole sample (see :class:`ShowerWriter`; float64 by default)."""
    with ShowerWriter(path, sample.geometry, attrs, dtype=dtype) as writer:
        writer.write(sample)
    return Path(path)


def read_incident_energies(path: str | os.PathLike) -> np.ndarray:
    """The incident energies (MeV) of a file, (N,) float64, without reading the voxels."""
    shower_file_info(path)
    with _open(path) as f:
        energies = np.asarray(f["incident_energies"][:], dtype=np.float64).reshape(-1)
    if not np.isfinite(energies).all() or (energies <= 0).any():
        raise InvalidDataError(f"{path}: 'incident_energies' must be finite and positive")
    return energies
