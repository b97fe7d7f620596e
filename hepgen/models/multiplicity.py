"""Sampling the number of particles per jet (seed 000 L2044-2075).

A Gaussian KDE with Scott's bandwidth (:class:`scipy.stats.gaussian_kde`) fitted to
the training multiplicities, sampled, rounded and clamped to [1, P]. The training
multiplicities are stored as a histogram (values, counts) with the bandwidth factor
of the unweighted fit, so the saved sampler is small and reproduces the same KDE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from hepgen.errors import InvalidDataError


class MultiplicityKDE:
    def __init__(self, values, counts, max_particles: int, factor: float | None = None):
        self.values = np.asarray(values, dtype=np.float64)
        self.counts = np.asarray(counts, dtype=np.float64)
        self.max_particles = int(max_particles)
        n = self.counts.sum()
        if n <= 0:
            raise InvalidDataError("cannot fit the multiplicity of an empty sample")
        # Scott's factor of the unweighted 1-D fit: n^(-1/5)
        self.factor = float(factor) if factor is not None else float(n ** (-1 / 5))
        if len(self.values) > 1:
            self.kde = stats.gaussian_kde(self.values, bw_method=self.factor, weights=self.counts)
        else:
            self.kde = None

    @classmethod
    def fit(cls, multiplicities, max_particles: int) -> "MultiplicityKDE":
        values, counts = np.unique(np.asarray(multiplicities, dtype=np.int64), return_counts=True)
        return cls(values, counts, max_particles)

    def sample(self, num: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        if self.kde is None:
            n = np.full(num, self.values[0])
        else:
            n = self.kde.resample(num, seed=rng)[0]
        return np.clip(np.rint(n), 1, self.max_particles).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": self.values.astype(int).tolist(),
            "counts": self.counts.astype(int).tolist(),
            "max_particles": self.max_particles,
            "factor": self.factor,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> "MultiplicityKDE":
        return cls(**state)
