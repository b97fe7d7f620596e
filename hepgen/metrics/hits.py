"""Metrics of calorimeter hit clouds (seed 004 sec. 6.3).

* ``w1_total_energy`` -- 1-D Wasserstein distance of the summed hit energy per jet;
* ``emd`` -- the energy mover's distance between a generated and a reference cloud
  (Komiske, Metodiev, Thaler 2019; the seed's eq. 6.3-6.6): the optimal-transport cost
  of moving energy with ground distance Delta R / R, plus |E_1 - E_2| for the energy
  that cannot be moved. Solved exactly with POT's network simplex (``ot.emd2``) as a
  balanced problem: the lighter cloud gets one extra point carrying the energy
  difference at ground distance 1 from every point of the other, which adds exactly
  |E_1 - E_2|. (energyflow's ``emd`` computes the same, but its ``wasserstein`` back end
  does not import under numpy 2.) R = 1: the clouds live within Delta R < 1 of the axis
  (seed L885). The value is the mean over pairs (generated jet i, reference jet i) with
  its standard deviation, as the seed reports it (3.720 +- 0.159 on 20k pairs).
* ``multiplicity`` -- W1 of the number of hits per jet.

Functions take plain arrays: hits (N, H, 3) = (eta, phi, E) and masks (N, H).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance


def total_energy(hits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (np.asarray(hits)[..., 2] * mask).sum(1, dtype=np.float64)


def w1_total_energy(hits1, mask1, hits2, mask2) -> float:
    return float(wasserstein_distance(total_energy(hits1, mask1), total_energy(hits2, mask2)))


def emd(cloud1: np.ndarray, cloud2: np.ndarray, R: float = 1.0) -> float:
    """EMD between two clouds (K, 3) = (eta, phi, E) (see the module docstring)."""
    import ot

    a, b = np.asarray(cloud1, np.float64), np.asarray(cloud2, np.float64)
    w1, w2 = a[:, 2].copy(), b[:, 2].copy()
    if len(a) == 0 or len(b) == 0:
        return float(w1.sum() + w2.sum())
    d = np.sqrt((a[:, None, 0] - b[None, :, 0]) ** 2 + (a[:, None, 1] - b[None, :, 1]) ** 2) / R
    diff = w1.sum() - w2.sum()
    if diff > 0:  # the second cloud is lighter: a dummy point there takes the excess
        d = np.concatenate([d, np.ones((len(a), 1))], 1)
        w2 = np.append(w2, diff)
    elif diff < 0:
        d = np.concatenate([d, np.ones((1, len(b)))], 0)
        w1 = np.append(w1, -diff)
    return float(ot.emd2(w1, w2, d, numItermax=1_000_000))


def emd_pairs(hits1, mask1, hits2, mask2, num_pairs: int | None = None, R: float = 1.0) -> np.ndarray:
    """EMD of clouds 1[i] and 2[i] for i < num_pairs (all pairs by default)."""
    n = min(len(hits1), len(hits2)) if num_pairs is None else min(num_pairs, len(hits1), len(hits2))
    return np.array([emd(hits1[i][mask1[i]], hits2[i][mask2[i]], R) for i in range(n)])


def hit_metrics(hits1, mask1, hits2, mask2, num_pairs: int = 2000) -> dict[str, dict[str, float]]:
    """``{"w1_total_energy", "emd", "w1_multiplicity"}`` as ``{"value", "error"}`` (GeV)."""
    e = emd_pairs(hits1, mask1, hits2, mask2, num_pairs)
    return {
        "w1_total_energy": {"value": w1_total_energy(hits1, mask1, hits2, mask2), "error": 0.0},
        "emd": {"value": float(e.mean()), "error": float(e.std())},
        "w1_multiplicity": {"value": float(wasserstein_distance(np.sum(mask1, 1), np.sum(mask2, 1))), "error": 0.0},
    }
