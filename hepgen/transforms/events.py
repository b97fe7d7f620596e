"""Representations of whole collision events for the event models (seed 003 ch. 7).

All three models work in the thesis' variables: ``log10`` of E, pT and MET, eta and phi
as they are (seed 003 L740-760). On top of that:

* :func:`object_table` regroups the objects of an :class:`EventSample` in a fixed
  *token order*: the types of :data:`OBJECT_TYPES` one after another (j, b, e-, e+, m-,
  m+, g), pT-descending inside a type. Given the count vector of an event the type and
  rank of every position are known (:func:`token_layout`), so models generate features
  only, never types.
* :class:`EventTokenTransform` (``event-cflow``): token 0 is the MET, then the objects.
  Per object (log10(pT - pT_min), atanh(eta / eta_max), delta-phi, log10(E / (pT cosh
  eta))): pT_min and eta_max are the object cuts of the type, so every decoded object
  passes them; azimuths are taken relative to METphi, so the model never sees the global
  rotation (METphi is drawn uniformly at sampling); the last variable is >= 0 for every
  physical four-vector (E >= |p|), so decoded objects are never tachyonic. Each variable
  is standardised per token type.
* :class:`EventVectorTransform` (``event-rqs``): the fixed vector of Experiment III,
  (log10 MET, METphi) + 16 slots x (log10 E, log10 pT, eta, phi) with the slot maxima of
  seed 003 Table 7.15 (4 j, 2 b, 2 of each lepton, 2 g); absent slots are zeros, events
  with more objects of a type than its slots are dropped (as in the thesis), and a slot
  counts as present after sampling when its log10 pT exceeds half the selection's.
* :class:`ObjectScaler` (``event-maf-types``): per-type standardisation of the thesis
  variables of single objects (and of (log10 MET, METphi)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.data.darkmachines import OBJECT_TYPES, EventSample
from hepgen.errors import InvalidDataError
from hepgen.transforms.base import Transform

NUM_TYPES = len(OBJECT_TYPES)
#: token type of the MET token in :class:`EventTokenTransform`
MET_TOKEN = NUM_TYPES
#: slots per type of Experiment III (seed 003 Table 7.15)
SLOTS = {"j": 4, "b": 2, "e-": 2, "e+": 2, "m-": 2, "m+": 2, "g": 2}


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Angles wrapped to (-pi, pi]."""
    out = np.mod(np.asarray(phi) + np.pi, 2 * np.pi) - np.pi
    return np.where(out == -np.pi, np.pi, out)


def to_thesis(objects: np.ndarray) -> np.ndarray:
    """(..., 4) (E, pT, eta, phi) -> (log10 E, log10 pT, eta, phi)."""
    out = np.array(objects, dtype=np.float64)
    out[..., :2] = np.log10(np.maximum(out[..., :2], 1e-12))
    return out


def from_thesis(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_thesis`; phi wrapped to (-pi, pi]."""
    out = np.array(x, dtype=np.float64)
    out[..., :2] = 10.0 ** out[..., :2]
    out[..., 3] = wrap_phi(out[..., 3])
    return out


def object_table(sample: EventSample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Objects in token order: (N, M, 4) features, (N, M) type codes (-1 = none), (N, 7) counts."""
    counts = sample.count_vectors()
    m = int(counts.sum(1).max()) if len(sample) else 0
    objects = np.zeros((len(sample), m, 4))
    types = np.full((len(sample), m), -1, dtype=np.int8)
    start = np.zeros(len(sample), dtype=np.int64)
    for code, kind in enumerate(OBJECT_TYPES):
        feats, mask = sample.objects_of(kind)
        if feats.shape[1]:
            order = np.argsort(-np.where(mask, feats[..., 1], -np.inf), axis=1, kind="stable")
            feats = np.take_along_axis(feats, order[..., None], 1)
            rows, ranks = np.nonzero(np.take_along_axis(mask, order, 1))
            objects[rows, start[rows] + ranks] = feats[rows, ranks]
            types[rows, start[rows] + ranks] = code
        start += counts[:, code]
    return objects, types, counts


def token_layout(counts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Type code and rank inside its type of each of ``length`` object positions ((N, length) each, -1 past the end)."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts, 1)
    pos = np.arange(length)
    types = (pos[None, :, None] >= ends[:, None, :]).sum(-1)
    valid = pos[None, :] < ends[:, -1:]
    starts = np.concatenate([np.zeros((len(counts), 1), np.int64), ends[:, :-1]], 1)
    ranks = pos[None, :] - np.take_along_axis(starts, np.minimum(types, NUM_TYPES - 1), 1)
    return np.where(valid, types, -1), np.where(valid, ranks, -1)


def build_sample(objects: np.ndarray, types: np.ndarray, met: np.ndarray, met_phi: np.ndarray,
                 process: str = "generated", first_id: int = 0) -> EventSample:
    """An :class:`EventSample` from token-ordered objects, written in the Dark Machines order
    (b-jets, jets, leptons, photons; pT-descending inside a type)."""
    n = len(met)
    file_order = [OBJECT_TYPES.index(t) for t in ("b", "j", "e-", "e+", "m-", "m+", "g")]
    rank_of_type = np.empty(NUM_TYPES + 1, dtype=np.int64)
    rank_of_type[file_order] = np.arange(NUM_TYPES)
    rank_of_type[NUM_TYPES] = NUM_TYPES  # padding (-1) last
    key = rank_of_type[np.where(types < 0, NUM_TYPES, types)] * 1e12 - np.where(types < 0, 0, objects[..., 1])
    order = np.argsort(key, axis=1, kind="stable")
    return EventSample(np.arange(first_id, first_id + n).astype(str), np.full(n, process, dtype=object),
                       np.ones(n), met, met_phi, np.take_along_axis(objects, order[..., None], 1),
                       np.take_along_axis(types, order, 1))


class EventTokenTransform(Transform):
    """MET token + objects as standardised (log10(pT - pT_min), atanh(eta / eta_max), dphi,
    log10 E/(pT cosh eta)) tokens.

    ``pt_min`` / ``eta_max`` per type are the object cuts of the dataset (the Dark Machines
    ones, :data:`hepgen.simulate.events.OBJECT_CUTS`, in the files' MeV), loosened where the
    training objects go beyond them, so every decoded object passes its object cut by
    construction and only the event-level (trigger) selection can reject an event."""

    name = "event-tokens"

    def __init__(self, max_objects: int = 20, mean: Any = None, std: Any = None, pt_min: Any = None,
                 eta_max: Any = None):
        self.max_objects = int(max_objects)
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)
        self.pt_min = None if pt_min is None else np.asarray(pt_min, np.float64)
        self.eta_max = None if eta_max is None else np.asarray(eta_max, np.float64)

    def _fit_cuts(self, objects: np.ndarray, types: np.ndarray) -> None:
        from hepgen.simulate.events import OBJECT_CUTS, UNITS

        self.pt_min, self.eta_max = np.zeros(NUM_TYPES), np.zeros(NUM_TYPES)
        for code, kind in enumerate(OBJECT_TYPES):
            pt_cut, eta_cut = OBJECT_CUTS[kind]
            sel = types == code
            pt, eta = objects[..., 1][sel], np.abs(objects[..., 2][sel])
            self.pt_min[code] = min(pt_cut * UNITS["MeV"], 0.999 * pt.min()) if len(pt) else pt_cut * UNITS["MeV"]
            self.eta_max[code] = max(eta_cut, 1.001 * eta.max()) if len(eta) else eta_cut

    def _raw(self, sample: EventSample):
        objects, types, counts = object_table(sample)
        if self.pt_min is None:
            self._fit_cuts(objects, types)
        keep = counts.sum(1) <= self.max_objects
        objects, types, counts = objects[keep, :self.max_objects], types[keep, :self.max_objects], counts[keep]
        met, met_phi = sample.met[keep], sample.met_phi[keep]
        n, m = types.shape
        x = np.zeros((n, m + 1, 4))
        x[:, 0, 0] = np.log10(np.maximum(met, 1e-12))
        e, pt, eta, phi = np.moveaxis(objects, -1, 0)
        real = types >= 0
        t = np.where(real, types, 0)
        pt_safe = np.where(real, pt, 1.0)
        x[:, 1:, 0] = np.log10(np.maximum(pt_safe - self.pt_min[t], 1e-3))
        x[:, 1:, 1] = np.arctanh(np.clip(eta / self.eta_max[t], -1 + 1e-7, 1 - 1e-7))
        x[:, 1:, 2] = wrap_phi(phi - met_phi[:, None])
        x[:, 1:, 3] = np.log10(np.maximum(np.where(real, e, 1.0) / (pt_safe * np.cosh(eta)), 1.0))
        x[:, 1:] *= real[..., None]
        token_types = np.concatenate([np.full((n, 1), MET_TOKEN), types], 1)
        return x, token_types, counts, keep

    def fit(self, sample: EventSample, mask=None) -> "EventTokenTransform":
        self.pt_min = self.eta_max = None
        x, token_types, _, keep = self._raw(sample)
        if not keep.any():
            raise InvalidDataError(f"no event has at most {self.max_objects} objects")
        self.mean, self.std = np.zeros((NUM_TYPES + 1, 4)), np.ones((NUM_TYPES + 1, 4))
        for t in range(NUM_TYPES + 1):
            v = x[token_types == t]
            if len(v) > 1:
                self.mean[t] = v.mean(0)
                self.std[t] = np.where(v.std(0) > 1e-6, v.std(0), 1.0)
        self.mean[MET_TOKEN, 1:], self.std[MET_TOKEN, 1:] = 0.0, 1.0
        return self

    def encode(self, sample: EventSample):
        """(x (N, 1+M, 4) float32, mask (N, 1+M), counts (N, 7), kept (N,) bool) of the events
        with at most ``max_objects`` objects."""
        x, token_types, counts, keep = self._raw(sample)
        real = token_types >= 0
        t = np.where(real, token_types, 0)
        x = np.where(real[..., None], (x - self.mean[t]) / self.std[t], 0.0)
        return x.astype(np.float32), real, counts, keep

    def transform(self, sample: EventSample) -> np.ndarray:
        return self.encode(sample)[0]

    def decode(self, x: np.ndarray, counts: np.ndarray, met_phi: np.ndarray, process: str = "generated",
               first_id: int = 0) -> EventSample:
        """Events from standardised tokens (N, 1+M, 4), their count vectors and METphi."""
        x = np.asarray(x, dtype=np.float64)
        n, m1, _ = x.shape
        types, _ = token_layout(counts, m1 - 1)
        token_types = np.concatenate([np.full((n, 1), MET_TOKEN), types], 1)
        t = np.where(token_types >= 0, token_types, 0)
        raw = x * self.std[t] + self.mean[t]
        met = 10.0 ** raw[:, 0, 0]
        obj = raw[:, 1:]
        to = t[:, 1:]
        pt = self.pt_min[to] + 10.0 ** obj[..., 0]
        eta = self.eta_max[to] * np.tanh(obj[..., 1])
        phi = wrap_phi(obj[..., 2] + met_phi[:, None])
        e = pt * np.cosh(eta) * 10.0 ** np.maximum(obj[..., 3], 0.0)
        objects = np.stack([e, pt, eta, phi], -1) * (types >= 0)[..., None]
        return build_sample(objects, types.astype(np.int8), met, met_phi, process, first_id)

    inverse_transform = decode

    def params(self) -> dict[str, Any]:
        return {"max_objects": self.max_objects, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "pt_min": self.pt_min.tolist(), "eta_max": self.eta_max.tolist()}


class EventVectorTransform(Transform):
    """The fixed 66-dim vector of Experiment III, standardised per dimension."""

    name = "event-vector"

    def __init__(self, slots: dict | None = None, mean: Any = None, std: Any = None, present: float = 2.0):
        self.slots = dict(slots or SLOTS)
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.std = None if std is None else np.asarray(std, np.float64)
        self.present = float(present)

    @property
    def dim(self) -> int:
        return 2 + 4 * sum(self.slots.values())

    def _raw(self, sample: EventSample):
        counts = sample.count_vectors()
        limits = np.array([self.slots.get(t, 0) for t in OBJECT_TYPES])
        keep = (counts <= limits).all(1)
        sub = sample[keep]
        v = np.zeros((len(sub), self.dim))
        v[:, 0] = np.log10(np.maximum(sub.met, 1e-12))
        v[:, 1] = sub.met_phi
        col = 2
        for kind in OBJECT_TYPES:
            k = self.slots.get(kind, 0)
            if not k:
                continue
            feats, mask = sub.objects_of(kind)
            block = np.zeros((len(sub), k, 4))
            kk = min(k, feats.shape[1])
            block[:, :kk] = np.where(mask[:, :kk, None], to_thesis(feats[:, :kk]), 0.0)
            v[:, col:col + 4 * k] = block.reshape(len(sub), -1)
            col += 4 * k
        return v, keep

    def fit(self, sample: EventSample, mask=None) -> "EventVectorTransform":
        v, keep = self._raw(sample)
        if not keep.any():
            raise InvalidDataError("no event fits the slots of the fixed event vector")
        self.mean, self.std = v.mean(0), np.where(v.std(0) > 1e-6, v.std(0), 1.0)
        return self

    def encode(self, sample: EventSample) -> tuple[np.ndarray, np.ndarray]:
        v, keep = self._raw(sample)
        return ((v - self.mean) / self.std).astype(np.float32), keep

    def transform(self, sample: EventSample) -> np.ndarray:
        return self.encode(sample)[0]

    def decode(self, v: np.ndarray, process: str = "generated", first_id: int = 0) -> EventSample:
        raw = np.asarray(v, np.float64) * self.std + self.mean
        n = len(raw)
        objects, types, col = [], [], 2
        for code, kind in enumerate(OBJECT_TYPES):
            k = self.slots.get(kind, 0)
            if not k:
                continue
            block = raw[:, col:col + 4 * k].reshape(n, k, 4)
            col += 4 * k
            present = block[..., 1] > self.present
            objects.append(np.where(present[..., None], from_thesis(block), 0.0))
            types.append(np.where(present, code, -1))
        objects = np.concatenate(objects, 1)
        types = np.concatenate(types, 1).astype(np.int8)
        # objects inside a type are re-sorted by pT (build_sample sorts), absent ones go last
        return build_sample(objects, types, 10.0 ** raw[:, 0], wrap_phi(raw[:, 1]), process, first_id)

    inverse_transform = decode

    def params(self) -> dict[str, Any]:
        return {"slots": self.slots, "mean": self.mean.tolist(), "std": self.std.tolist(), "present": self.present}


class ObjectScaler(Transform):
    """Per-type standardisation of single objects' (log10 E, log10 pT, eta, phi) and of (log10 MET, METphi)."""

    name = "event-object-scaler"

    def __init__(self, mean: dict | None = None, std: dict | None = None):
        self.mean = {k: np.asarray(v) for k, v in (mean or {}).items()}
        self.std = {k: np.asarray(v) for k, v in (std or {}).items()}

    @staticmethod
    def raw(sample: EventSample) -> dict[str, np.ndarray]:
        """{type: (K, 4) thesis variables of all objects of that type, "met": (N, 2)}."""
        out = {"met": np.stack([np.log10(np.maximum(sample.met, 1e-12)), sample.met_phi], 1)}
        for code, kind in enumerate(OBJECT_TYPES):
            out[kind] = to_thesis(sample.objects[sample.types == code])
        return out

    def fit(self, sample: EventSample, mask=None) -> "ObjectScaler":
        for kind, v in self.raw(sample).items():
            if len(v) > 1:
                self.mean[kind] = v.mean(0)
                self.std[kind] = np.where(v.std(0) > 1e-6, v.std(0), 1.0)
        return self

    def transform(self, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: ((v - self.mean[k]) / self.std[k]).astype(np.float32) for k, v in x.items() if k in self.mean}

    def inverse(self, kind: str, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, np.float64) * self.std[kind] + self.mean[kind]

    def params(self) -> dict[str, Any]:
        return {"mean": {k: v.tolist() for k, v in self.mean.items()},
                "std": {k: v.tolist() for k, v in self.std.items()}}


class SequentialObjectScaler(ObjectScaler):
    """The variables of Experiment II (``event-maf-next``, seed 003 sec. 7.2.2, Figs. 7.14-7.16):

    * ``met``: (log10 MET, METphi), as in Experiment I;
    * ``first:T``: the hardest object of type T of every event with the event's
      (log10 MET, METphi) in front: (log10 MET, METphi, log10 E, log10 pT, eta, phi);
    * ``next:T``: every further object of type T (pT-descending) with, in addition, the
      cumulative log10 E and log10 pT of the objects of that type before it:
      (log10 MET, METphi, log10 cumE, log10 cumpT, log10 E, log10 pT, eta, phi).

    Each key is standardised on its own (:class:`ObjectScaler`). The first 2 (``first``) or
    4 (``next``) columns are the *selection variables*: the sampler draws candidates from
    the joint flow and keeps the one closest to the event's values in them.
    """

    name = "event-sequential-scaler"

    #: selection variables (leading columns) of each kind of key
    SELECT = {"first": 2, "next": 4}

    @staticmethod
    def raw(sample: EventSample) -> dict[str, np.ndarray]:
        objects, types, counts = object_table(sample)
        met = np.stack([np.log10(np.maximum(sample.met, 1e-12)), sample.met_phi], 1)
        out = {"met": met}
        _, ranks = token_layout(counts, objects.shape[1])
        for code, kind in enumerate(OBJECT_TYPES):
            sel = types == code
            rows, cols = np.nonzero(sel)
            feats = objects[rows, cols]
            rank = ranks[rows, cols]
            # cumulative E and pT of the objects of this type before each one (token order
            # is pT-descending inside a type, so these are the harder ones)
            e = np.where(sel, objects[..., 0], 0.0)
            pt = np.where(sel, objects[..., 1], 0.0)
            cum_e = (np.cumsum(e, 1) - e)[rows, cols]
            cum_pt = (np.cumsum(pt, 1) - pt)[rows, cols]
            first = rank == 0
            out[f"first:{kind}"] = np.concatenate([met[rows[first]], to_thesis(feats[first])], 1)
            nxt = ~first
            cum = np.log10(np.maximum(np.stack([cum_e[nxt], cum_pt[nxt]], 1), 1e-12))
            out[f"next:{kind}"] = np.concatenate([met[rows[nxt]], cum, to_thesis(feats[nxt])], 1)
        return out
