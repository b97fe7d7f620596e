"""Augmentations of events and jets for contrastive learning (AnomalyCLR, DarkCLR).

Seed 002 sec. 5.3 (L1557-1812). Contrastive learning maps an event x to a representation
z = f(x). It is trained on pairs: a *physical* augmentation x' of x (a symmetry of the data
or a detector effect, which f should ignore: the positive pair) and an *anomaly*
augmentation x* of x (an unphysical change that mimics new physics, which f should notice:
the anomaly pair, L1575-1580). Every function here takes a batch and a
``numpy.random.Generator`` and returns a new array (the input is never modified).

**Events** (AnomalyCLR) are fixed-slot arrays ``(N, 19, 3)`` of (pT [GeV], eta, phi) in
the layout of the CMS anomaly-detection challenge the seed uses (L1644-1650, L1376):
slot 0 the MET (pT = MET, eta = 0, phi = METphi), slots 1-4 electrons, 5-8 muons, 9-18
jets, each type in descending pT, empty slots all zero (pT = 0 marks padding). Build them
from a Dark Machines file with :func:`event_slots` (b-jets count as jets, e+/e- as
electrons, mu+/mu- as muons, photons are left out as in the challenge format).

* physical (L1594-1605, all three applied together by :func:`physical_event`):
  :func:`rotate_event` (the whole event, MET included, rotated in phi by one angle),
  :func:`smear_eta_phi` (eta' ~ N(eta, sigma(pT)), phi' ~ N(phi, sigma(pT)) with a
  variance inversely proportional to pT), :func:`smear_pt` (pT' ~ N(pT, f(pT)) with the
  Delphes jet resolution f(pT) = sqrt(0.052 pT^2 + 1.502 pT), pT in GeV);
* anomaly (L1607-1617, one per event, chosen uniformly, by :func:`anomaly_event`):
  :func:`add_objects` m(x) (random numbers of electrons, muons and jets added, MET
  recomputed), :func:`split_objects` m-bar(x) (extra objects made by splitting existing
  ones, MET and the total pT kept), :func:`shift_pt` s_pT(x) (the MET, the object pTs,
  or both scaled by one random factor up to 5, L1621: "five times the original
  momentum"; factors >= 1, so the trigger selection is never spoiled).

**Jets** (DarkCLR) are ``(N, P, 3)`` arrays of (ptrel, etarel, phirel) of the
constituents, pT-ordered, padding all zero (ptrel = 0) -- the JetNet layout's first three
features reordered; :func:`jet_constituents` makes them from ``particle_features``.

* physical (L1625-1631, both applied by :func:`physical_jet`): :func:`rotate_jet` (the
  whole jet rotated in the eta-phi plane by a random angle in [0, 2 pi)) and
  :func:`translate_jet` (every constituent shifted by one random (d eta, d phi) in a window
  as wide as the distance between the two furthest constituents);
* anomaly (L1633-1635): :func:`drop_constituents` (each constituent dropped with
  probability p_drop, the remaining pT rescaled to the original jet pT).
"""

from __future__ import annotations

import numpy as np

#: slot layout of an event array: (first slot, number of slots) of MET, electrons, muons, jets
EVENT_LAYOUT = {"met": (0, 1), "e": (1, 4), "mu": (5, 4), "jet": (9, 10)}
NUM_SLOTS = 19
#: type index (0 MET, 1 e, 2 mu, 3 jet) of each slot
SLOT_TYPE = np.array([0] + [1] * 4 + [2] * 4 + [3] * 10)
#: |eta| limits of added objects (the Dark Machines object selection, hepgen.simulate.events.OBJECT_CUTS)
ETA_MAX = {"e": 2.7, "mu": 2.7, "jet": 2.8}
#: phi-eta smearing strength a [GeV]: sigma(pT)^2 = a / pT (a 20 GeV object: sigma 0.05)
SMEAR_A = 0.05


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


# --- events --------------------------------------------------------------------------------


def event_slots(sample) -> np.ndarray:
    """(N, 19, 3) float64 event arrays (pT GeV, eta, phi) of a Dark Machines
    :class:`~hepgen.data.darkmachines.EventSample` (MeV), in :data:`EVENT_LAYOUT`.

    Objects beyond the slots of their type (more than 4 electrons, 4 muons, 10 jets) are
    dropped, the softest first, as in the challenge format.

    Args:
        sample: the events (E, pt, eta, phi in MeV; type codes of ``OBJECT_TYPES``).
    """
    from hepgen.data.darkmachines import TYPE_CODE

    n = len(sample)
    out = np.zeros((n, NUM_SLOTS, 3))
    out[:, 0, 0] = sample.met / 1e3
    out[:, 0, 2] = _wrap(sample.met_phi)
    groups = {"e": ("e-", "e+"), "mu": ("m-", "m+"), "jet": ("j", "b")}
    for kind, names in groups.items():
        start, size = EVENT_LAYOUT[kind]
        sel = np.isin(sample.types, [TYPE_CODE[t] for t in names])
        pt = np.where(sel, sample.objects[..., 1], -1.0)
        order = np.argsort(-pt, axis=1, kind="stable")[:, :size]
        k = min(size, order.shape[1])
        rows = np.arange(n)[:, None]
        picked = sample.objects[rows, order[:, :k]]
        ok = sel[rows, order[:, :k]]
        feats = np.stack([picked[..., 1] / 1e3, picked[..., 2], picked[..., 3]], axis=-1) * ok[..., None]
        out[:, start:start + k] = feats
    return out


def _sort_types(x: np.ndarray) -> np.ndarray:
    """Each type's slots in descending pT (padding last)."""
    x = x.copy()
    for kind in ("e", "mu", "jet"):
        s, k = EVENT_LAYOUT[kind]
        block = x[:, s:s + k]
        order = np.argsort(-block[..., 0], axis=1, kind="stable")
        x[:, s:s + k] = np.take_along_axis(block, order[..., None], axis=1)
    return x


def rotate_event(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Azimuthal rotation of the whole final state (seed 002 L1596-1597): every object and
    the MET of an event rotated by one angle phi ~ U[0, 2 pi); pT and |MET| unchanged.

    Args:
        x: (N, 19, 3) event arrays (:func:`event_slots`).
        rng: random generator.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    angle = rng.uniform(0, 2 * np.pi, size=(len(x), 1))
    present = x[..., 0] > 0
    x[..., 2] = np.where(present, _wrap(x[..., 2] + angle), 0.0)
    return x


def smear_eta_phi(x: np.ndarray, rng: np.random.Generator, a: float = SMEAR_A) -> np.ndarray:
    """eta-phi smearing (seed 002 L1599-1601): eta' ~ N(eta, sigma(pT)), phi' ~ N(phi,
    sigma(pT)) with a variance inversely proportional to pT, sigma(pT)^2 = a / pT. The MET
    keeps eta = 0 and its phi (it is not a measured direction).

    Args:
        x: (N, 19, 3) event arrays.
        rng: random generator.
        a: strength in GeV (sigma = sqrt(a / pT[GeV]); the default 0.05 gives 0.05 at 20 GeV).
    """
    x = np.array(x, dtype=np.float64, copy=True)
    present = x[..., 0] > 0
    present[:, 0] = False
    sigma = np.sqrt(a / np.maximum(x[..., 0], 1e-6))
    x[..., 1] = np.where(present, x[..., 1] + sigma * rng.standard_normal(x.shape[:2]), x[..., 1])
    x[..., 2] = np.where(present, _wrap(x[..., 2] + sigma * rng.standard_normal(x.shape[:2])), x[..., 2])
    return x


def delphes_resolution(pt: np.ndarray) -> np.ndarray:
    """f(pT) = sqrt(0.052 pT^2 + 1.502 pT), pT in GeV: the jet energy smearing of Delphes
    quoted by the seed (002 L1605)."""
    pt = np.asarray(pt, dtype=np.float64)
    return np.sqrt(0.052 * pt ** 2 + 1.502 * pt)


def smear_pt(x: np.ndarray, rng: np.random.Generator, min_fraction: float = 0.1) -> np.ndarray:
    """Energy smearing (seed 002 L1603-1605): the jet pTs re-sampled as pT' ~ N(pT, f(pT))
    with :func:`delphes_resolution`. Leptons and the MET are measured far better and kept.
    A draw below ``min_fraction`` x pT is clipped there, so a jet never becomes padding.

    Args:
        x: (N, 19, 3) event arrays.
        rng: random generator.
        min_fraction: the lowest smeared pT as a fraction of the original.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    s, k = EVENT_LAYOUT["jet"]
    pt = x[:, s:s + k, 0]
    new = pt + delphes_resolution(pt) * rng.standard_normal(pt.shape)
    x[:, s:s + k, 0] = np.where(pt > 0, np.maximum(new, min_fraction * pt), 0.0)
    return _sort_types(x)


def physical_event(x: np.ndarray, rng: np.random.Generator, a: float = SMEAR_A) -> np.ndarray:
    """The positive partner x' of AnomalyCLR: rotation, eta-phi and pT smearing applied
    together (seed 002 L1619)."""
    return smear_pt(smear_eta_phi(rotate_event(x, rng), rng, a), rng)


def met_vector(x: np.ndarray) -> np.ndarray:
    """(N, 2) missing transverse momentum vector (px, py) [GeV] of event arrays."""
    return np.stack([x[:, 0, 0] * np.cos(x[:, 0, 2]), x[:, 0, 0] * np.sin(x[:, 0, 2])], axis=1)


def _set_met(x: np.ndarray, vec: np.ndarray) -> None:
    x[:, 0, 0] = np.hypot(vec[:, 0], vec[:, 1])
    x[:, 0, 2] = np.arctan2(vec[:, 1], vec[:, 0])
    x[:, 0, 1] = 0.0


def add_objects(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicity shift m(x) (seed 002 L1609-1610): each event gets a random number of
    new electrons, muons and jets, up to the free slots (4 - n_e, 4 - n_mu, 10 - n_j; at
    least one object in all), with eta uniform within the type's acceptance, phi uniform,
    and pT a uniform random fraction of the event's largest object pT. The MET is
    recomputed: the added objects' pT vector is subtracted from it.

    Args:
        x: (N, 19, 3) event arrays.
        rng: random generator.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    met = met_vector(x)
    ptmax = np.maximum(x[:, 1:, 0].max(1), 1.0)
    added = np.zeros((len(x), 2))
    kinds = ("e", "mu", "jet")
    for i in range(len(x)):
        free = {}
        for kind in kinds:
            s, k = EVENT_LAYOUT[kind]
            free[kind] = int((x[i, s:s + k, 0] <= 0).sum())
        counts = {kind: int(rng.integers(0, free[kind] + 1)) for kind in kinds}
        if sum(counts.values()) == 0:
            open_kinds = [kind for kind in kinds if free[kind] > 0]
            if not open_kinds:
                continue
            counts[open_kinds[int(rng.integers(len(open_kinds)))]] = 1
        for kind, c in counts.items():
            if not c:
                continue
            s, k = EVENT_LAYOUT[kind]
            slots = s + np.flatnonzero(x[i, s:s + k, 0] <= 0)[:c]
            pt = rng.uniform(0, 1, c) * ptmax[i]
            phi = rng.uniform(-np.pi, np.pi, c)
            x[i, slots, 0] = np.maximum(pt, 1e-3)
            x[i, slots, 1] = rng.uniform(-ETA_MAX[kind], ETA_MAX[kind], c)
            x[i, slots, 2] = phi
            added[i] += [np.sum(x[i, slots, 0] * np.cos(phi)), np.sum(x[i, slots, 0] * np.sin(phi))]
    _set_met(x, met - added)
    return _sort_types(x)


def split_objects(x: np.ndarray, rng: np.random.Generator, a: float = SMEAR_A) -> np.ndarray:
    """Multiplicity shift keeping MET and the total pT, m-bar(x) (seed 002 L1611-1612): a
    random number of existing objects (at least one, up to the free slots of their type)
    are each split in two, pT -> (f pT, (1 - f) pT) with f ~ U(0.1, 0.9), and both halves'
    eta-phi smeared with the physical smearing (:func:`smear_eta_phi`'s sigma(pT)). The
    scalar pT sum of every type and the MET are unchanged.

    Args:
        x: (N, 19, 3) event arrays.
        rng: random generator.
        a: smearing strength of :func:`smear_eta_phi`.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    for i in range(len(x)):
        candidates = []
        for kind in ("e", "mu", "jet"):
            s, k = EVENT_LAYOUT[kind]
            n = int((x[i, s:s + k, 0] > 0).sum())
            if 0 < n < k:
                candidates.append(kind)
        if not candidates:
            continue
        total_free = sum(int((x[i, EVENT_LAYOUT[c][0]:sum(EVENT_LAYOUT[c]), 0] <= 0).sum()) for c in candidates)
        splits = int(rng.integers(1, total_free + 1))
        for _ in range(splits):
            open_kinds = [c for c in candidates if (x[i, EVENT_LAYOUT[c][0]:sum(EVENT_LAYOUT[c]), 0] <= 0).any()]
            if not open_kinds:
                break
            kind = open_kinds[int(rng.integers(len(open_kinds)))]
            s, k = EVENT_LAYOUT[kind]
            block = x[i, s:s + k]
            src = s + int(rng.choice(np.flatnonzero(block[:, 0] > 0)))
            dst = s + int(np.flatnonzero(block[:, 0] <= 0)[0])
            f = rng.uniform(0.1, 0.9)
            pt = x[i, src, 0]
            eta, phi = x[i, src, 1], x[i, src, 2]
            for slot, part in ((src, f * pt), (dst, (1 - f) * pt)):
                sigma = np.sqrt(a / max(part, 1e-6))
                x[i, slot] = [part, eta + sigma * rng.standard_normal(), _wrap(phi + sigma * rng.standard_normal())]
    return _sort_types(x)


def shift_pt(x: np.ndarray, rng: np.random.Generator, max_factor: float = 5.0) -> np.ndarray:
    """pT and MET shift s_pT(x) (seed 002 L1613-1617, L1621): one factor c ~ U(1, max_factor)
    per event multiplies, chosen uniformly, the MET only, the object pTs only, or both.
    c >= 1 keeps every event passing the (pT-threshold) trigger selection.

    Args:
        x: (N, 19, 3) event arrays.
        rng: random generator.
        max_factor: the largest factor (the seed's window of five times the momentum).
    """
    x = np.array(x, dtype=np.float64, copy=True)
    c = rng.uniform(1.0, max_factor, len(x))
    mode = rng.integers(0, 3, len(x))          # 0: MET, 1: objects, 2: both
    x[:, 0, 0] *= np.where(mode != 1, c, 1.0)
    x[:, 1:, 0] *= np.where(mode != 0, c, 1.0)[:, None]
    return x


#: the anomaly augmentations of AnomalyCLR, by name (seed 002 L1607-1617)
EVENT_ANOMALIES = {"add": add_objects, "split": split_objects, "shift": shift_pt}


def anomaly_event(x: np.ndarray, rng: np.random.Generator, which=tuple(EVENT_ANOMALIES)) -> np.ndarray:
    """The anomaly partner x* of AnomalyCLR: one anomaly augmentation per event, chosen
    uniformly among ``which`` (seed 002 L1619: never combined with a physical one).

    Args:
        x: (N, 19, 3) event arrays.
        rng: random generator.
        which: names in :data:`EVENT_ANOMALIES` to draw from.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.array(x, copy=True)
    pick = rng.integers(0, len(which), len(x))
    for j, name in enumerate(which):
        sel = pick == j
        if sel.any():
            out[sel] = EVENT_ANOMALIES[name](x[sel], rng)
    return out


# --- jets ------------------------------------------------------------------------------------


def jet_constituents(particle_features: np.ndarray, num_constituents: int | None = None) -> np.ndarray:
    """(N, P, 3) float64 (ptrel, etarel, phirel) of JetNet-layout ``particle_features``
    (etarel, phirel, ptrel, mask), masked entries zero, truncated to the
    ``num_constituents`` hardest (DarkCLR: N_c = 50, Table B.11)."""
    pf = np.asarray(particle_features, dtype=np.float64)
    mask = pf[..., 3] > 0
    out = np.stack([pf[..., 2], pf[..., 0], pf[..., 1]], axis=-1) * mask[..., None]
    out[..., 0] = np.where(mask, np.maximum(out[..., 0], 1e-12), 0.0)
    order = np.argsort(-out[..., 0], axis=1, kind="stable")
    out = np.take_along_axis(out, order[..., None], axis=1)
    return out if num_constituents is None else out[:, :num_constituents]


def rotate_jet(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation of each jet in the eta-phi plane about its axis by an angle ~ U[0, 2 pi),
    one angle for all constituents of a jet (seed 002 L1627).

    Args:
        x: (N, P, 3) constituents (ptrel, etarel, phirel).
        rng: random generator.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    a = rng.uniform(0, 2 * np.pi, (len(x), 1))
    c, s = np.cos(a), np.sin(a)
    eta, phi = x[..., 1].copy(), x[..., 2].copy()
    present = x[..., 0] > 0
    x[..., 1] = np.where(present, c * eta - s * phi, 0.0)
    x[..., 2] = np.where(present, s * eta + c * phi, 0.0)
    return x


def translate_jet(x: np.ndarray, rng: np.random.Generator, width: float = 1.0) -> np.ndarray:
    """Translation in eta-phi (seed 002 L1629): all constituents of a jet shifted by one
    (d eta, d phi), each uniform in +-width/2 times the jet's extent in that coordinate
    (the distance between its two furthest constituents).

    Args:
        x: (N, P, 3) constituents.
        rng: random generator.
        width: the window in units of the jet's extent.
    """
    x = np.array(x, dtype=np.float64, copy=True)
    present = x[..., 0] > 0
    for j in (1, 2):
        hi = np.where(present, x[..., j], -np.inf).max(1)
        lo = np.where(present, x[..., j], np.inf).min(1)
        ext = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
        shift = rng.uniform(-0.5, 0.5, len(x)) * width * ext
        x[..., j] = np.where(present, x[..., j] + shift[:, None], 0.0)
    return x


def physical_jet(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The positive partner x' of DarkCLR: rotation then translation (seed 002 L1631)."""
    return translate_jet(rotate_jet(x, rng), rng)


def drop_constituents(x: np.ndarray, rng: np.random.Generator, p_drop: float = 0.5) -> np.ndarray:
    """DarkCLR's anomaly augmentation (seed 002 L1633-1635): each constituent dropped with
    probability ``p_drop`` (at least one, the hardest if all would go, is kept), the
    survivors' pT rescaled so the jet keeps its original pT sum; re-ordered by pT.

    Args:
        x: (N, P, 3) constituents.
        rng: random generator.
        p_drop: drop probability (the seed's default 0.5, L1774).
    """
    x = np.array(x, dtype=np.float64, copy=True)
    present = x[..., 0] > 0
    keep = present & (rng.random(present.shape) >= p_drop)
    none = ~keep.any(1) & present.any(1)
    keep[none, 0] = True
    total = x[..., 0].sum(1)
    kept = np.where(keep, x[..., 0], 0.0).sum(1)
    scale = np.where(kept > 0, total / np.maximum(kept, 1e-300), 0.0)
    x[..., 0] = np.where(keep, x[..., 0] * scale[:, None], 0.0)
    x[..., 1:] *= keep[..., None]
    order = np.argsort(-x[..., 0], axis=1, kind="stable")
    return np.take_along_axis(x, order[..., None], axis=1)


def anomaly_jet(x: np.ndarray, rng: np.random.Generator, p_drop: float = 0.5) -> np.ndarray:
    """The anomaly partner x* of DarkCLR (:func:`drop_constituents`)."""
    return drop_constituents(x, rng, p_drop)


__all__ = [
    "EVENT_LAYOUT", "NUM_SLOTS", "SLOT_TYPE", "event_slots", "rotate_event", "smear_eta_phi", "delphes_resolution",
    "smear_pt", "physical_event", "met_vector", "add_objects", "split_objects", "shift_pt", "EVENT_ANOMALIES",
    "anomaly_event", "jet_constituents", "rotate_jet", "translate_jet", "physical_jet", "drop_constituents",
    "anomaly_jet",
]
