"""Experiment II of seed 003 (sec. 7.2, ``event-maf-next``): cumulative particle subdivision.

Experiment I draws every object of an event independently, so nothing ties the jets to
the MET or to each other. Experiment II keeps its pieces (a MAF for (log10 MET, METphi),
the alias sampler for the count vector) and trains, per object type T, *two* MAFs on
joint vectors that carry the context in front (:class:`~hepgen.transforms.events.
SequentialObjectScaler`):

* ``first:T`` on (log10 MET, METphi, log10 E, log10 pT, eta, phi) of the hardest T;
* ``next:T`` on (log10 MET, METphi, log10 cumE, log10 cumpT, log10 E, log10 pT, eta, phi)
  of every further T, cumE / cumpT summing the T objects before it.

The flows are not conditional: an event is assembled by *selection* (seed 003 Fig. 7.17,
steps 1-6). The MET comes first; for every object still to make, ``candidates`` (1000 in
the thesis) vectors are drawn from the joint flow and the one nearest to the event's
values in the leading columns -- (MET, METphi) for a first object, plus (cumE, cumpT) for
a next one -- is kept; its last four columns are the object. Distances are Euclidean in the
standardised variables of the flow (the thesis does not say in which units it measures
them; standardising keeps log-MET and angles on the same footing). The sampler then
sorts by pT and applies the validity check like the other event models.

The price is speed: every object costs ``candidates`` samples of an autoregressive flow
(the thesis: 7.2 events/s on an RTX 3060 against 10.4 for Experiment I), so the
candidate count is a sampler option (``sampler.candidates``) and CPU benches use fewer.
"""

from __future__ import annotations

import numpy as np
import torch

from hepgen.data.darkmachines import OBJECT_TYPES, EventSample
from hepgen.transforms.events import SequentialObjectScaler, build_sample, from_thesis, wrap_phi

#: candidate rows drawn per flow call (memory bound of the selection)
CHUNK_ROWS = 200_000


def flow_keys(raw: dict[str, np.ndarray], min_objects: int) -> list[str]:
    """The ``first:T`` / ``next:T`` keys with at least ``min_objects`` training rows."""
    return [k for k in raw if k != "met" and len(raw[k]) >= min_objects]


def trainable_events(counts: np.ndarray, keys: list[str]) -> np.ndarray:
    """Events whose count vector needs only flows in ``keys`` (a T needs ``first:T`` when
    it occurs, ``next:T`` when it occurs twice or more); the others are not drawn."""
    keep = np.ones(len(counts), bool)
    for code, kind in enumerate(OBJECT_TYPES):
        if f"first:{kind}" not in keys:
            keep &= counts[:, code] < 1
        if f"next:{kind}" not in keys:
            keep &= counts[:, code] < 2
    return keep


@torch.no_grad()
def _select(flow, target: np.ndarray, candidates: int) -> np.ndarray:
    """For each row of ``target`` (B, d): the nearest of ``candidates`` draws of ``flow``
    in the first d columns (standardised space); returns (B, D) draws."""
    d = target.shape[1]
    out = []
    per_call = max(1, CHUNK_ROWS // candidates)
    for start in range(0, len(target), per_call):
        t = torch.as_tensor(target[start : start + per_call], dtype=torch.float32)
        draws = flow().sample((len(t) * candidates,)).cpu().reshape(len(t), candidates, -1)
        best = ((draws[..., :d] - t[:, None]) ** 2).sum(-1).argmin(1)
        out.append(draws[torch.arange(len(t)), best].numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def sample_sequential(networks: dict, transform: SequentialObjectScaler, counts: np.ndarray, candidates: int,
                      process: str) -> EventSample:
    """Events for the count vectors ``counts`` (N, 7) by the Experiment II procedure (the
    module docstring); the global torch RNG draws every flow sample."""
    n = len(counts)
    met = transform.inverse("met", networks["met"]().sample((n,)).cpu().numpy())
    m = int(counts.sum(1).max()) if n else 0
    objects = np.zeros((n, m, 4))
    types = np.full((n, m), -1, dtype=np.int8)
    start = np.zeros(n, dtype=np.int64)
    for code, kind in enumerate(OBJECT_TYPES):
        k = counts[:, code]
        cum = np.zeros((n, 2))  # cumulative E, pT of the type so far
        for rank in range(int(k.max()) if n else 0):
            idx = np.nonzero(k > rank)[0]
            key = f"{'first' if rank == 0 else 'next'}:{kind}"
            d = SequentialObjectScaler.SELECT[key.split(":")[0]]
            context = met[idx] if rank == 0 else np.concatenate([met[idx], np.log10(np.maximum(cum[idx], 1e-12))], 1)
            target = (context - transform.mean[key][:d]) / transform.std[key][:d]
            best = transform.inverse(key, _select(networks[key], target, candidates))
            feats = from_thesis(best[:, d:])
            objects[idx, start[idx] + rank] = feats
            types[idx, start[idx] + rank] = code
            cum[idx] += feats[:, :2]
        start += k
    return build_sample(objects, types, 10.0 ** met[:, 0], wrap_phi(met[:, 1]), process)
