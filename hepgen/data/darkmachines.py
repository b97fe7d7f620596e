"""Collision events in the Dark Machines text format (seed 003 sec. 3.2).

One event per line, fields separated by ``;``::

    event ID; process ID; event weight; MET; METphi; obj1, E1, pt1, eta1, phi1; obj2, ...

with object types ``j`` (jet), ``b`` (b-jet), ``e-``, ``e+``, ``m-``, ``m+`` (electrons,
muons) and ``g`` (photon); E, pT and MET in MeV, as in the real Dark Machines files
(values like ``254038.0``) and in those of hepgen's producer
(:mod:`hepgen.simulate.events`, whose :func:`~hepgen.simulate.events.selection_mask`
applies the dataset's object and event selection). In memory, :class:`EventSample` is
columnar: the event fields as arrays and the objects as a padded (N, M, 4) array of (E, pt,
eta, phi) with their type codes (-1 marks padding) in file order, so a file converts to
arrays and back without loss (floats are written in Python's shortest round-trip form).

:func:`iter_events` streams a file in chunks of lines, so multi-GB files never sit in
memory; :func:`read_events` reads a whole file; :func:`write_events` writes atomically
(a temporary file moved into place when complete).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from hepgen.data.atomic import atomic_output
from hepgen.errors import InputFileError, InvalidDataError

OBJECT_TYPES = ("j", "b", "e-", "e+", "m-", "m+", "g")
TYPE_CODE = {t: i for i, t in enumerate(OBJECT_TYPES)}
FEATURES = ("E", "pt", "eta", "phi")


@dataclass
class EventSample:
    """Events as arrays: ``objects`` (N, M, 4) = (E, pt, eta, phi), ``types`` (N, M) codes."""

    event_id: np.ndarray
    process: np.ndarray
    weight: np.ndarray
    met: np.ndarray
    met_phi: np.ndarray
    objects: np.ndarray
    types: np.ndarray
    source: str = field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        self.event_id = np.asarray(self.event_id, dtype=object)
        self.process = np.asarray(self.process, dtype=object)
        self.weight = np.asarray(self.weight, dtype=np.float64)
        self.met = np.asarray(self.met, dtype=np.float64)
        self.met_phi = np.asarray(self.met_phi, dtype=np.float64)
        objects, types = np.asarray(self.objects, dtype=np.float64), np.asarray(self.types, dtype=np.int8)
        if len(self.met) == 0:  # no event (e.g. none of a batch passed the selection): keep the width
            self.objects = objects.reshape(0, objects.shape[1] if objects.ndim == 3 else 0, 4)
            self.types = types.reshape(0, types.shape[1] if types.ndim == 2 else 0)
        else:
            self.objects = objects.reshape(len(self.met), -1, 4)
            self.types = types.reshape(len(self.met), -1)
        n = len(self.met)
        for name in ("event_id", "process", "weight", "met_phi", "objects", "types"):
            if len(getattr(self, name)) != n:
                raise InvalidDataError(f"{self.source}: '{name}' has {len(getattr(self, name))} rows, MET has {n}")
        if self.objects.shape[:2] != self.types.shape:
            raise InvalidDataError(f"{self.source}: objects {self.objects.shape} and types {self.types.shape} differ")
        if not (np.isfinite(self.met).all() and np.isfinite(self.met_phi).all()
                and np.isfinite(self.objects[self.types >= 0]).all()):
            raise InvalidDataError(f"{self.source}: NaN or inf in MET or object features")

    def __len__(self) -> int:
        return len(self.met)

    @property
    def counts(self) -> np.ndarray:
        """(N,) number of objects per event."""
        return (self.types >= 0).sum(1)

    def count_vectors(self) -> np.ndarray:
        """(N, 7) number of objects of each type (order of :data:`OBJECT_TYPES`)."""
        return np.stack([(self.types == k).sum(1) for k in range(len(OBJECT_TYPES))], axis=1)

    def objects_of(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, K, 4) features of the objects of one type in file order (pt-sorted) and their mask."""
        code = TYPE_CODE[kind]
        sel = self.types == code
        k = int(sel.sum(1).max()) if len(self) else 0
        out = np.zeros((len(self), k, 4))
        mask = np.zeros((len(self), k), dtype=bool)
        rank = np.cumsum(sel, axis=1) - 1
        rows, cols = np.nonzero(sel)
        out[rows, rank[rows, cols]] = self.objects[rows, cols]
        mask[rows, rank[rows, cols]] = True
        return out, mask

    def __getitem__(self, index) -> "EventSample":
        return EventSample(self.event_id[index], self.process[index], self.weight[index], self.met[index],
                           self.met_phi[index], self.objects[index], self.types[index], self.source)


def concatenate(samples: list[EventSample]) -> EventSample:
    m = max((s.objects.shape[1] for s in samples), default=0)

    def pad(a, fill):
        return np.pad(a, [(0, 0), (0, m - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=fill)

    return EventSample(np.concatenate([s.event_id for s in samples]), np.concatenate([s.process for s in samples]),
                       np.concatenate([s.weight for s in samples]), np.concatenate([s.met for s in samples]),
                       np.concatenate([s.met_phi for s in samples]),
                       np.concatenate([pad(s.objects, 0.0) for s in samples]),
                       np.concatenate([pad(s.types, -1) for s in samples]), samples[0].source if samples else "")


def _parse_line(line: str, where: str):
    fields = [f.strip() for f in line.strip().rstrip(";").split(";")]
    if len(fields) < 5:
        raise InputFileError(f"{where}: expected 'event ID; process ID; weight; MET; METphi; objects...', "
                             f"found {len(fields)} fields")
    try:
        weight, met, met_phi = float(fields[2]), float(fields[3]), float(fields[4])
    except ValueError:
        raise InputFileError(f"{where}: weight, MET and METphi must be numbers") from None
    objs, types = [], []
    for text in fields[5:]:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 5:
            raise InputFileError(f"{where}: object '{text}' must be 'type, E, pt, eta, phi'")
        if parts[0] not in TYPE_CODE:
            raise InputFileError(f"{where}: unknown object type '{parts[0]}' (known: {' '.join(OBJECT_TYPES)})")
        try:
            objs.append([float(v) for v in parts[1:]])
        except ValueError:
            raise InputFileError(f"{where}: object '{text}' has a non-numeric feature") from None
        types.append(TYPE_CODE[parts[0]])
    return fields[0], fields[1], weight, met, met_phi, objs, types


def _build(rows, source) -> EventSample:
    m = max((len(r[6]) for r in rows), default=0)
    n = len(rows)
    objects = np.zeros((n, m, 4))
    types = np.full((n, m), -1, dtype=np.int8)
    for i, r in enumerate(rows):
        if r[6]:
            objects[i, :len(r[6])] = r[5]
            types[i, :len(r[6])] = r[6]
    return EventSample([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows],
                       [r[4] for r in rows], objects, types, source)


def iter_events(path: str | os.PathLike, chunk_size: int = 100_000) -> Iterator[EventSample]:
    """Yield the events of a Dark Machines file in chunks of ``chunk_size`` lines."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: file not found")
    rows = []
    try:
        with path.open() as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rows.append(_parse_line(line, f"{path}:{number}"))
                if len(rows) == chunk_size:
                    yield _build(rows, str(path))
                    rows = []
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not a text file") from None
    if rows:
        yield _build(rows, str(path))


def read_events(path: str | os.PathLike) -> EventSample:
    chunks = list(iter_events(path))
    if not chunks:
        raise InvalidDataError(f"{path}: the file holds no events")
    return concatenate(chunks)


def format_event(sample: EventSample, i: int) -> str:
    parts = [str(sample.event_id[i]), str(sample.process[i]), repr(float(sample.weight[i])),
             repr(float(sample.met[i])), repr(float(sample.met_phi[i]))]
    for code, feats in zip(sample.types[i], sample.objects[i]):
        if code < 0:
            continue
        parts.append(",".join([OBJECT_TYPES[code]] + [repr(float(v)) for v in feats]))
    return ";".join(parts) + ";"


def write_events(samples: EventSample | list[EventSample], path: str | os.PathLike) -> Path:
    """Write one or several samples (chunks) to ``path`` atomically."""
    path = Path(path)
    samples = [samples] if isinstance(samples, EventSample) else list(samples)
    with atomic_output(path) as tmp, open(tmp, "w") as f:
        for sample in samples:
            for i in range(len(sample)):
                f.write(format_event(sample, i) + "\n")
    return path
